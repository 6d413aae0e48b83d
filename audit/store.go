// Package audit keeps the history of every job in ClickHouse: the sink moves
// events from JetStream into it, and the query side answers winch audit and
// winch logs for jobs older than the events stream keeps.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/winchhq/winch/schema"
)

// DefaultDatabase is used when the DSN names none.
const DefaultDatabase = "winch"

// Store is the audit store in one ClickHouse database.
type Store struct {
	conn driver.Conn
	db   string
	log  *slog.Logger
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Open connects to ClickHouse over the native protocol. The DSN is
// clickhouse://[user:password@]host:port/database; the database need not
// exist yet (Migrate creates it).
func Open(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("clickhouse DSN %q: %w (want clickhouse://host:9000/winch)", redactDSN(dsn), err)
	}
	db := opts.Auth.Database
	if db == "" || db == "default" {
		db = DefaultDatabase
	}
	if !identifier.MatchString(db) {
		return nil, fmt.Errorf("clickhouse DSN: database %q is not a plain identifier", db)
	}
	// Connect to the server's default database, so that a missing winch
	// database is something Migrate creates rather than a failed handshake;
	// every statement names its tables in full.
	opts.Auth.Database = "default"
	opts.Protocol = clickhouse.Native
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open clickhouse: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w at %s: %v", ErrUnavailable, redactDSN(dsn), err)
	}
	return &Store{conn: conn, db: db, log: log}, nil
}

// ErrUnavailable says ClickHouse did not answer.
var ErrUnavailable = errors.New("clickhouse not reachable")

func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "@"); i >= 0 {
		if j := strings.Index(dsn, "://"); j >= 0 && j < i {
			return dsn[:j+3] + "***" + dsn[i:]
		}
	}
	return dsn
}

// Close closes the connection.
func (s *Store) Close() error { return s.conn.Close() }

// Ping says whether ClickHouse answers.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Database is the database the store lives in.
func (s *Store) Database() string { return s.db }

// Migrate creates the database and applies the migrations not applied yet,
// recording each in schema_migrations. Running it again, or from several
// sinks at once, changes nothing: every statement is idempotent.
func (s *Store) Migrate(ctx context.Context) (applied []string, err error) {
	if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
		return nil, fmt.Errorf("create database %s: %w", s.db, err)
	}
	if err := s.conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.db+".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY version"); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	done := map[uint32]bool{}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT version FROM "+s.db+".schema_migrations")
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, err
		}
		done[v] = true
	}
	rows.Close()
	migrations, err := schema.ClickHouseMigrations()
	if err != nil {
		return nil, err
	}
	for _, m := range migrations {
		if done[uint32(m.Version)] {
			continue
		}
		for _, stmt := range statements(m.SQL) {
			if err := s.conn.Exec(ctx, strings.ReplaceAll(stmt, "{db}", s.db)); err != nil && !columnExists(err) {
				return applied, fmt.Errorf("migration %03d_%s: %w", m.Version, m.Name, err)
			}
		}
		batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".schema_migrations (version, name, applied_at)")
		if err != nil {
			return applied, err
		}
		if err := batch.Append(uint32(m.Version), m.Name, time.Now()); err != nil {
			return applied, err
		}
		if err := batch.Send(); err != nil {
			return applied, fmt.Errorf("record migration %03d: %w", m.Version, err)
		}
		applied = append(applied, fmt.Sprintf("%03d_%s", m.Version, m.Name))
		s.log.Info("clickhouse migration applied", "version", m.Version, "name", m.Name)
	}
	return applied, nil
}

// columnExists reports an ADD COLUMN that another sink applied first.
func columnExists(err error) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && ex.Code == 44 && strings.Contains(ex.Message, "already exists")
}

// statements splits a migration into statements, comment lines dropped
// first (a comment may hold a ';').
func statements(sql string) []string {
	var lines []string
	for _, line := range strings.Split(sql, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
			lines = append(lines, line)
		}
	}
	var out []string
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if strings.TrimSpace(stmt) != "" {
			out = append(out, strings.TrimSpace(stmt))
		}
	}
	return out
}

const eventColumns = "job_id, attempt, seq, time, time_ns, kind, state, stream, data, has_exit, exit_code, error, reason, worker, command, principal, queue, param_names, param_values, executor, image, commit, priority, schedule, parent_id"

const jobColumns = "job_id, version, state, command, module, principal, queue, attempt, worker, executor, param_names, param_values, has_exit, exit_code, error, reason, created_at, started_at, finished_at, duration_ms, commit, priority, schedule, parent_id"

// Insert writes events, and the job rows they imply, in one batch per
// table: job rows first, so that once an event is visible its job's row is
// too. Inserting the same events again is harmless: queries collapse rows
// with the same key.
func (s *Store) Insert(ctx context.Context, events []schema.Event) error {
	if len(events) == 0 {
		return nil
	}
	for _, ev := range events {
		if err := storable(ev); err != nil {
			return err
		}
	}
	if err := s.insertJobs(ctx, events); err != nil {
		return err
	}
	eb, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".events ("+eventColumns+")")
	if err != nil {
		return fmt.Errorf("prepare events batch: %w", err)
	}
	for _, ev := range events {
		names, values := flattenParams(ev.Params)
		hasExit, code := exitOf(ev.ExitCode)
		if err := eb.Append(ev.JobID, uint32(ev.Attempt), uint64(ev.Seq), ev.Time, uint64(ev.Time.UnixNano()),
			string(ev.Kind), string(ev.State), string(ev.Stream), ev.Data, hasExit, code, ev.Error, ev.Reason,
			ev.Worker, ev.Command, ev.Principal, ev.Queue, names, values, ev.Executor, ev.Image, ev.Commit, string(ev.Priority), ev.Schedule, ev.ParentID); err != nil {
			_ = eb.Abort()
			return fmt.Errorf("%w: append event %s: %w", ErrRefused, ev.MsgID(), err)
		}
	}
	if err := eb.Send(); err != nil {
		return fmt.Errorf("insert %d events: %w", len(events), refusal(err))
	}
	return nil
}

// insertJobs writes a job row for each event that starts or ends a job.
func (s *Store) insertJobs(ctx context.Context, events []schema.Event) error {
	var jobs []schema.Event
	for _, ev := range events {
		if ev.Kind == schema.KindAccepted || ev.Terminal() {
			jobs = append(jobs, ev)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	jb, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".jobs ("+jobColumns+")")
	if err != nil {
		return fmt.Errorf("prepare jobs batch: %w", err)
	}
	for _, ev := range jobs {
		names, values := flattenParams(ev.Params)
		hasExit, code := exitOf(ev.ExitCode)
		created := ev.CreatedAt
		if created.IsZero() {
			created = ev.Time
		}
		started, finished := ev.StartedAt, time.Time{}
		// The end outranks the start, and a later attempt an earlier one.
		version := uint64(ev.Attempt)
		if ev.Terminal() {
			version |= 1 << 40
			finished = ev.Time
		} else if started.IsZero() {
			started = ev.Time
		}
		var durationMS uint64
		if !started.IsZero() && !finished.IsZero() && finished.After(started) {
			durationMS = uint64(finished.Sub(started).Milliseconds())
		}
		module, _, _ := strings.Cut(ev.Command, ".")
		if err := jb.Append(ev.JobID, version, string(ev.State), ev.Command, module, ev.Principal, ev.Queue,
			uint32(ev.Attempt), ev.Worker, ev.Executor, names, values, hasExit, code, ev.Error, ev.Reason,
			created, started, finished, durationMS, ev.Commit, string(ev.Priority), ev.Schedule, ev.ParentID); err != nil {
			_ = jb.Abort()
			return fmt.Errorf("%w: append job row of %s: %w", ErrRefused, ev.MsgID(), err)
		}
	}
	if err := jb.Send(); err != nil {
		return fmt.Errorf("insert %d job rows: %w", len(jobs), refusal(err))
	}
	return nil
}

func exitOf(code *int) (uint8, int32) {
	if code == nil {
		return 0, 0
	}
	return 1, int32(*code)
}

// flattenParams turns parameters into parallel arrays of names and JSON
// values, sorted by name (DESIGN: arrays, not Map, for ClickHouse 18.16).
func flattenParams(params map[string]any) ([]string, []string) {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	values := make([]string, len(names))
	for i, n := range names {
		b, err := json.Marshal(params[n])
		if err != nil {
			b = []byte(strconv.Quote(fmt.Sprint(params[n])))
		}
		values[i] = string(b)
	}
	return names, values
}

func unflattenParams(names, values []string) map[string]any {
	if len(names) == 0 {
		return nil
	}
	out := make(map[string]any, len(names))
	for i, n := range names {
		var v any
		if i < len(values) && json.Unmarshal([]byte(values[i]), &v) == nil {
			out[n] = v
		}
	}
	return out
}

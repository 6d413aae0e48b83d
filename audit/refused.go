package audit

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/winchhq/winch/schema"
)

// ErrRefused marks an insert refused for what its rows hold, by ClickHouse
// or by the store before sending (a value its column cannot hold): sending
// the same rows again changes nothing. Every other failure (a connection
// lost, a timeout, a missing table, too many parts) is worth retrying.
var ErrRefused = errors.New("clickhouse refuses the rows")

// refusedCodes are ClickHouse's exception codes about the data of an insert
// (ErrorCodes.cpp), as opposed to the server, the schema or the connection.
var refusedCodes = map[int32]bool{
	6:   true, // CANNOT_PARSE_TEXT
	26:  true, // CANNOT_PARSE_QUOTED_STRING
	27:  true, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
	38:  true, // CANNOT_PARSE_DATE
	41:  true, // CANNOT_PARSE_DATETIME
	53:  true, // TYPE_MISMATCH
	69:  true, // ARGUMENT_OUT_OF_BOUND
	70:  true, // CANNOT_CONVERT_TYPE
	72:  true, // CANNOT_PARSE_NUMBER
	117: true, // INCORRECT_DATA
	131: true, // TOO_LARGE_STRING_SIZE
	190: true, // SIZES_OF_ARRAYS_DOESNT_MATCH
	321: true, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
	395: true, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a MATERIALIZED check)
	469: true, // VIOLATED_CONSTRAINT (19.14 and later)
	691: true, // UNKNOWN_ELEMENT_OF_ENUM
}

// refusal marks err as ErrRefused when ClickHouse's exception is about the
// rows.
func refusal(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && refusedCodes[ex.Code] {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

// The range of ClickHouse's DateTime (seconds since 1970 in a UInt32). The
// driver does not check it: a time outside would be stored as another date.
var (
	minDateTime = time.Unix(0, 0)
	maxDateTime = time.Unix(math.MaxUint32, 0)
)

// storable says whether the event's values fit the audit store's columns;
// an error wraps ErrRefused and names the field.
func storable(ev schema.Event) error {
	bad := func(field string, v any) error {
		return fmt.Errorf("%w: event %s: %s %v does not fit the audit store's column", ErrRefused, ev.MsgID(), field, v)
	}
	for _, t := range []struct {
		field string
		at    time.Time
	}{{"time", ev.Time}, {"created_at", ev.CreatedAt}, {"started_at", ev.StartedAt}} {
		if !t.at.IsZero() && (t.at.Before(minDateTime) || t.at.After(maxDateTime)) {
			return bad(t.field, t.at.UTC().Format(time.RFC3339))
		}
	}
	if ev.Attempt < 0 || int64(ev.Attempt) > math.MaxUint32 {
		return bad("attempt", ev.Attempt)
	}
	if ev.Seq < 0 {
		return bad("seq", ev.Seq)
	}
	if ev.ExitCode != nil && (*ev.ExitCode < math.MinInt32 || *ev.ExitCode > math.MaxInt32) {
		return bad("exit_code", *ev.ExitCode)
	}
	return nil
}

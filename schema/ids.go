package schema

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"regexp"
	"strings"
	"time"
)

// lowerHex32 is base32hex in lower case: its alphabet sorts like the bytes it
// encodes, so IDs made later sort after IDs made earlier.
var lowerHex32 = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

var (
	jobIDPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	principalPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_@-]{0,63}$`)
	queuePattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
)

// NewJobID returns a new random job ID: 26 characters that sort by creation
// time (48 bits of milliseconds, then 80 random bits).
func NewJobID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return lowerHex32.EncodeToString(b[:])
}

// IdempotentJobID derives the job ID for an idempotency key, so that the
// same principal asking twice with the same key names the same job.
func IdempotentJobID(principal, key string) string {
	sum := sha256.Sum256([]byte(principal + "\x00" + key))
	return "k" + lowerHex32.EncodeToString(sum[:])[:25]
}

// ValidJobID reports whether id can name a job: it is used as a NATS subject
// token and a KV key, so only lower-case letters, digits, '-' and '_'.
func ValidJobID(id string) bool { return jobIDPattern.MatchString(id) }

// ValidPrincipal reports whether p can name a principal. The principal is the
// last token of the request subject, which NATS authorization ties to the
// connected user, so it may not contain '.', '*', '>' or spaces.
func ValidPrincipal(p string) bool { return principalPattern.MatchString(p) }

// ValidQueue reports whether q can name a queue (a subject token and part of
// a consumer name).
func ValidQueue(q string) bool { return queuePattern.MatchString(q) }

// SplitCommand splits "module.command" into its two names.
func SplitCommand(name string) (module, command string, ok bool) {
	module, command, ok = strings.Cut(name, ".")
	if !ok || !nameToken.MatchString(module) || !nameToken.MatchString(command) {
		return "", "", false
	}
	return module, command, true
}

var nameToken = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

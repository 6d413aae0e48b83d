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

// validToken reports whether s is a letter or digit of class first, then up
// to max-1 of those or of the extra bytes: the shape of IDs, principals and
// queues, which are subject tokens. (They are checked for every request, so
// by a loop rather than a regular expression; the patterns in
// request.schema.json say the same, and FuzzDecodeRequest holds the two
// to it.)
func validToken(s string, max int, upper bool, extra string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', upper && 'A' <= c && c <= 'Z':
		case i > 0 && strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

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
func ValidJobID(id string) bool { return validToken(id, 64, false, "_-") }

// ValidPrincipal reports whether p can name a principal. The principal is the
// last token of the request subject, which NATS authorization ties to the
// connected user, so it may not contain '.', '*', '>' or spaces.
func ValidPrincipal(p string) bool { return validToken(p, 64, true, "_@-") }

// ValidQueue reports whether q can name a queue (a subject token and part of
// a consumer name).
func ValidQueue(q string) bool { return validToken(q, 32, false, "_-") }

// SplitCommand splits "module.command" into its two names.
func SplitCommand(name string) (module, command string, ok bool) {
	module, command, ok = strings.Cut(name, ".")
	if !ok || !nameToken.MatchString(module) || !nameToken.MatchString(command) {
		return "", "", false
	}
	return module, command, true
}

var nameToken = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

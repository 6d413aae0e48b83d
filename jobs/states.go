package jobs

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/schema"
)

// States reads the states of the jobs ids, a thousand per request (batched
// direct gets on the bucket's stream), for readers of many jobs at once. A
// job without a state is not in the map; one whose entry does not decode
// is in errs.
func States(ctx context.Context, nc *nats.Conn, ids []string) (states map[string]schema.JobState, errs map[string]error, err error) {
	subjects := make([]string, len(ids))
	for i, id := range ids {
		subjects[i] = stateSubject(id)
	}
	states, errs = make(map[string]schema.JobState, len(ids)), map[string]error{}
	err = broker.ReadLast(ctx, nc, "KV_"+broker.StateBucket, subjects, func(m broker.StoredMsg) error {
		id := strings.TrimPrefix(m.Subject, stateSubject(""))
		if op := m.Header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil
		}
		st, err := schema.DecodeJobState(m.Data)
		if err != nil {
			errs[id] = err
			return nil
		}
		states[id] = st
		return nil
	})
	return states, errs, err
}

func stateSubject(key string) string { return "$KV." + broker.StateBucket + "." + key }

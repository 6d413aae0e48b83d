package producer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
	"github.com/winchhq/winch/modules"
	"github.com/winchhq/winch/producer"
	"github.com/winchhq/winch/schema"
)

func TestPrepareFanout(t *testing.T) {
	t.Parallel()
	cat, err := modules.CatalogOf([]modules.Entry{{Name: "core", Manifest: modules.Core()}, dbModule(t, "db")})
	if err != nil {
		t.Fatal(err)
	}
	each := func(values ...string) *schema.Each { return &schema.Each{Param: "name", Values: values} }
	for _, tt := range []struct {
		name    string
		req     producer.RunRequest
		wantErr string
	}{
		{"valid", producer.RunRequest{Command: "db.backup", Each: each("main", "users"), Parallel: 2}, ""},
		{"one bad value refuses all", producer.RunRequest{Command: "db.backup", Each: each("main", "Bad-One", "users")},
			`invalid parameters for db.backup: name (value 2, "Bad-One"): `},
		{"a list parameter", producer.RunRequest{Command: "db.backup", Each: &schema.Each{Param: "tables", Values: []string{"a"}}},
			`"tables" is of type list: a fan-out's values are text`},
		{"no such parameter", producer.RunRequest{Command: "db.backup", Each: &schema.Each{Param: "nmae", Values: []string{"a"}}},
			`"nmae" is not a parameter of this command`},
		{"given twice", producer.RunRequest{Command: "db.backup", Params: map[string]any{"name": "x"}, Each: each("a")},
			"given both as a parameter and as the fan-out's values"},
		{"too many", producer.RunRequest{Command: "db.backup", Each: each(make([]string, schema.MaxFanout+1)...)},
			"a fan-out takes 1 to 10000 values; 10001 were given"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.req.Queue, tt.req.Principal = "q", "alice"
			req, err := producer.Prepare(cat, tt.req)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if req.Each == nil || len(req.Each.Values) != 2 || req.Parallel != 2 || req.ModuleCommit != dbCommit {
					t.Fatalf("prepared %+v", req)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !producer.IsInvalid(err) {
				t.Fatalf("error %v, want an invalid request error with %q", err, tt.wantErr)
			}
		})
	}
}

// A fan-out with a bad value publishes nothing at all.
func TestFanoutWithABadValuePublishesNothing(t *testing.T) {
	t.Parallel()
	c := client(t)
	cat, err := modules.CatalogOf([]modules.Entry{{Name: "core", Manifest: modules.Core()}, dbModule(t, "db")})
	if err != nil {
		t.Fatal(err)
	}
	values := make([]string, 10_000)
	for i := range values {
		values[i] = "db" + strings.Repeat("x", i%5)
	}
	values[9_999] = "9-not-a-name"
	_, err = c.RunIn(t.Context(), cat, producer.RunRequest{Command: "db.backup", Queue: "fanout-bad", Principal: "alice",
		Each: &schema.Each{Param: "name", Values: values}, Parallel: 5})
	var invalid *producer.InvalidParamsError
	if !errors.As(err, &invalid) || !strings.Contains(err.Error(), `value 10000, "9-not-a-name"`) {
		t.Fatalf("error %v, want the bad value named", err)
	}
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), broker.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(broker.QueueFilter("fanout-bad")))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 0 {
		t.Fatalf("published %v", info.State.Subjects)
	}
}

func TestChildIndex(t *testing.T) {
	t.Parallel()
	for job, want := range map[string]int{"p-0": 0, "p-42": 42, "p-x": -1, "p-01": -1, "q-1": -1, "p--1": -1, "p-1-2": -1} {
		i, ok := producer.ChildIndex("p", job)
		if (want >= 0) != ok || (ok && i != want) {
			t.Errorf("ChildIndex(p, %s) = %d %v, want %d", job, i, ok, want)
		}
	}
}

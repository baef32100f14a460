package reconciler

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// mapStore is a FailureStore over a map; failing makes every call fail like Consul down.
type mapStore struct {
	kv      map[string][]byte
	failing bool
}

var errStoreDown = errors.New("consul down")

func (m *mapStore) KVPut(_ context.Context, key string, value []byte) error {
	if m.failing {
		return errStoreDown
	}
	m.kv[key] = value
	return nil
}

func (m *mapStore) KVDelete(_ context.Context, key string) error {
	if m.failing {
		return errStoreDown
	}
	delete(m.kv, key)
	return nil
}

func (m *mapStore) KVList(_ context.Context, prefix string) (map[string][]byte, error) {
	if m.failing {
		return nil, errStoreDown
	}
	out := map[string][]byte{}
	for k, v := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}

func storeReconciler(mem *mapStore, fleet string) *Reconciler {
	return &Reconciler{cfg: Config{Failures: mem, Fleet: fleet, Now: time.Now, OpTimeout: time.Second},
		log: slog.New(slog.DiscardHandler), failed: map[string]failure{}}
}

func TestFailuresOutliveTheReconciler(t *testing.T) {
	ctx := context.Background()
	mem := &mapStore{kv: map[string][]byte{}}
	first := storeReconciler(mem, "prod")
	first.recordFailure(ctx, "web", failure{Revision: "rev3", SpecHash: "h3", Reason: "deadline"})

	if _, ok := mem.kv["drover/fleets/prod/failed/web"]; !ok {
		t.Fatalf("memory after recordFailure: keys %v, want drover/fleets/prod/failed/web", slices.Collect(maps.Keys(mem.kv)))
	}
	// A restarted Drover of the same fleet sees it; one of another fleet does not.
	got, err := storeReconciler(mem, "prod").failures(ctx)
	if err != nil || got["web"].Revision != "rev3" || got["web"].SpecHash != "h3" {
		t.Fatalf("failures of a new reconciler: %+v, %v; want web at rev3", got, err)
	}
	if got, _ := storeReconciler(mem, "staging").failures(ctx); len(got) != 0 {
		t.Errorf("failures of another fleet: %+v, want none", got)
	}
	// Deleting the key in Consul lets the revision be tried again, even by the
	// Drover that recorded it.
	delete(mem.kv, "drover/fleets/prod/failed/web")
	if got, _ := first.failures(ctx); len(got) != 0 {
		t.Errorf("failures after the key was deleted: %+v, want none", got)
	}
}

func TestFailuresWhenStoreIsDown(t *testing.T) {
	ctx := context.Background()
	mem := &mapStore{kv: map[string][]byte{}, failing: true}
	r := storeReconciler(mem, "prod")
	r.recordFailure(ctx, "web", failure{Revision: "rev3", SpecHash: "h3"})
	if _, err := r.failures(ctx); !errors.Is(err, errStoreDown) {
		t.Fatalf("failures with the memory down: %v, want its error (no plan without them)", err)
	}
	// Back up: the record that could not be written still holds the revision here.
	mem.failing = false
	got, err := r.failures(ctx)
	if err != nil || got["web"].Revision != "rev3" {
		t.Fatalf("failures after the memory came back: %+v, %v; want web at rev3 kept in memory", got, err)
	}
	// An unreadable record is skipped, not fatal.
	mem.kv["drover/fleets/prod/failed/api"] = []byte("{not json")
	if got, err := r.failures(ctx); err != nil || len(got) != 1 {
		t.Errorf("failures with an unreadable record: %+v, %v; want web only", got, err)
	}
}

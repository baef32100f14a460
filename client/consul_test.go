package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
	"github.com/hashicorp/consul/api"
)

// consulFleet starts a Consul agent holding what Drovers of fleet "prod" leave
// there: two instances of web (v1 passing, v2 critical), one of another fleet, a held
// revision of db, and an event ring with its head.
func consulFleet(t *testing.T) (*discovery.Client, string) {
	t.Helper()
	agent := testenv.Consul(t)
	ac, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	reg := func(id, fleet, version string, critical bool) {
		r := &api.AgentServiceRegistration{ID: id, Name: "web", Tags: []string{reconciler.Tag}, Address: "127.0.0.1", Port: 8080,
			Meta: map[string]string{reconciler.MetaFleet: fleet, "version": version, "revision": "1a2b3c4d5e6f"}}
		if critical {
			r.Check = &api.AgentServiceCheck{TTL: "1h", Status: api.HealthCritical}
		}
		if err := ac.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	reg("web-aaaa-1", "prod", "1", false)
	reg("web-bbbb-2", "prod", "2", true)
	reg("web-cccc-3", "staging", "9", false)
	c, err := discovery.New(discovery.Config{Address: agent.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hold, _ := json.Marshal(map[string]any{"revision": "ffeeddccbbaa", "spec_hash": "x", "reason": "deadline passed", "at": time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)})
	put := func(k string, v []byte) {
		if err := c.KVPut(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put("drover/fleets/prod/failed/db", hold)
	// The layout of discovery.Ring: a head holding the last number, slots by seq mod size.
	put("drover/fleets/prod/events/head", []byte("3"))
	for seq, svc := range map[int]string{1: "web", 2: "db", 3: "web"} {
		raw, _ := json.Marshal(reconciler.Event{Seq: uint64(seq), Kind: reconciler.EventVMCreated, Fleet: "prod", Service: svc, VMs: []string{fmt.Sprint("vm-", seq)}})
		put(fmt.Sprintf("drover/fleets/prod/events/slot/%d", seq%1000), raw)
	}
	return c, agent.Addr
}

func TestConsulFallback(t *testing.T) {
	store, addr := consulFleet(t)
	ctx := context.Background()
	c := &Consul{Store: store, Addr: addr}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Fleet != "prod" || len(st.Services) != 2 || !strings.Contains(st.Error, "read from Consul at "+addr) {
		t.Fatalf("status: got %+v, want fleet prod (the only one in KV) with db and web, saying where it came from", st)
	}
	db, web := st.Services[0], st.Services[1]
	if db.Name != "db" || db.Phase != "held" || db.Held == nil || db.Held.Revision != "ffeeddccbbaa" || db.Held.Reason != "deadline passed" {
		t.Errorf("db: got %+v, want held ffeeddccbbaa", db)
	}
	wantVersions := []reconciler.VersionCount{{Version: "1", Passing: 1, Total: 1}, {Version: "2", Passing: 0, Total: 1}}
	if web.Name != "web" || fmt.Sprint(web.Versions) != fmt.Sprint(wantVersions) || len(web.VMs) != 2 || web.VMs[0].Address != "127.0.0.1:8080" {
		t.Errorf("web: got %+v, want versions %v from the prod instances only", web, wantVersions)
	}

	evs, err := c.History(ctx, "web", 0)
	if err != nil || len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 3 {
		t.Errorf("history web: got %+v, %v; want seq 1 and 3", evs, err)
	}
	if evs, err := c.History(ctx, "", 1); err != nil || len(evs) != 1 || evs[0].Seq != 3 {
		t.Errorf("history --limit 1: got %+v, %v; want seq 3", evs, err)
	}

	if err := c.Suspend(ctx, "web", "by hand"); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Status(ctx)
	if s := st.Services[1]; s.Suspended == nil || s.Suspended.Reason != "by hand" || s.Phase != "suspended" {
		t.Errorf("after suspend: web %+v, want suspended by hand", s)
	}
	if err := c.Resume(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if kv, _ := store.KVList(ctx, "drover/fleets/prod/suspended/"); len(kv) != 0 {
		t.Errorf("after resume: suspensions %q, want none", kv)
	}
	if err := c.Retry(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if kv, _ := store.KVList(ctx, "drover/fleets/prod/failed/"); len(kv) != 0 {
		t.Errorf("after retry: held %q, want none", kv)
	}
	if err := c.Retry(ctx, "web"); !errors.Is(err, reconciler.ErrNotHeld) {
		t.Errorf("retry of a service not held: got %v, want reconciler.ErrNotHeld", err)
	}
	if err := c.Suspend(ctx, "nope", ""); !errors.Is(err, reconciler.ErrUnknownService) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("suspend of an unknown service: got %v, want reconciler.ErrUnknownService naming it", err)
	}
	// The orders went through the reconciler's own code: their events are in the ring.
	all, err := c.History(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []reconciler.EventKind
	for _, ev := range all {
		kinds = append(kinds, ev.Kind)
	}
	if want := []reconciler.EventKind{reconciler.EventSuspended, reconciler.EventResumed, reconciler.EventRevisionReleased}; !slices.Equal(kinds[len(kinds)-3:], want) {
		t.Errorf("events after suspend, resume, retry: got %v, want %v last", kinds, want)
	}

	// A second fleet in KV: the fallback must be told which.
	if err := store.KVPut(ctx, "drover/fleets/staging/failed/web", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "prod, staging") || !strings.Contains(err.Error(), "--fleet") {
		t.Errorf("two fleets, no --fleet: got %v, want both named and --fleet asked for", err)
	}
	c.Fleet = "staging"
	if st, err := c.Status(ctx); err != nil || len(st.Services) != 1 || st.Services[0].Versions[0].Version != "9" {
		t.Errorf("--fleet staging: got %+v, %v; want its one instance", st, err)
	}
}

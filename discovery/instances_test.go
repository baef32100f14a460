package discovery

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestServiceInstancesSeesOthers registers an instance of "vault" as another team
// would (no drover tag, its own meta) next to one of Drover's: ServiceInstances
// must list it with its tags and meta, so the reconciler can refuse to join a
// service it does not own.
func TestServiceInstancesSeesOthers(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	vault := &api.AgentServiceRegistration{
		ID: "vault-1", Name: "vault", Address: "127.0.0.1", Port: 8200,
		Tags: []string{"active"}, Meta: map[string]string{"team": "security"},
	}
	if err := c.api.Agent().ServiceRegisterOpts(vault, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		t.Fatalf("register vault as another team: %v", err)
	}
	defer c.Deregister(context.Background(), "vault-1")
	h := newHealthServer(t, 200)
	web := httpRegistration(t, "web-1", "web", h)
	register(t, c, web)
	defer c.Deregister(context.Background(), "web-1")

	// The agent syncs to the catalog a moment later: follow it with blocking queries.
	var index uint64
	for {
		entries, meta, err := c.api.Health().Service("vault", "", false,
			(&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx))
		if err != nil {
			t.Fatalf("wait for vault-1 in the catalog: %v", err)
		}
		if len(entries) > 0 {
			break
		}
		index = meta.LastIndex
	}
	got, err := c.ServiceInstances(ctx, "vault")
	if err != nil {
		t.Fatalf("ServiceInstances(vault): %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("ServiceInstances(vault): got %d instances %+v, want vault-1 only", len(got), got)
	}
	g := got[0]
	if g.ID != "vault-1" || g.Service != "vault" || g.Address != "127.0.0.1" || g.Port != 8200 || g.Node == "" ||
		fmt.Sprint(g.Tags) != "[active]" || fmt.Sprint(g.Meta) != "map[team:security]" || g.Status != StatusPassing {
		t.Errorf("vault instance: got %+v; want vault-1 at 127.0.0.1:8200 on a node, tags [active], meta team=security, passing", g)
	}
	if none, err := c.ServiceInstances(ctx, "nobody"); err != nil || len(none) != 0 {
		t.Errorf("ServiceInstances(nobody): got %v, %v; want none", none, err)
	}
	if _, err := c.ServiceInstances(ctx, ""); err == nil {
		t.Error("ServiceInstances(\"\"): want an error")
	}
}

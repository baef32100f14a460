package main

import (
	"strings"
	"testing"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
	"github.com/hashicorp/consul/api"
)

// TestCtlConsulFallback: with no Drover listening, status, suspend, retry and history
// read and write Consul directly, and say so.
func TestCtlConsulFallback(t *testing.T) {
	agent := testenv.Consul(t)
	ac, err := api.NewClient(&api.Config{Address: agent.Addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-aaaa-1", Name: "web", Tags: []string{reconciler.Tag}, Address: "127.0.0.1", Port: 8080,
		Meta: map[string]string{reconciler.MetaFleet: "prod", "version": "1.4.1"}}); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"drover/fleets/prod/failed/web":    `{"revision":"ffeeddccbbaa","reason":"deadline passed","at":"2026-12-04T19:00:00Z"}`,
		"drover/fleets/prod/events/head":   `1`,
		"drover/fleets/prod/events/slot/1": `{"seq":1,"time":"2026-12-04T19:00:00Z","kind":"rollout_failed","fleet":"prod","service":"web","reason":"deadline passed"}`,
	} {
		if _, err := ac.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	server := "http://" + deadAddr(t)
	cli := func(args ...string) (int, string, string) {
		return ctl(t, append(args, "--server", server, "--consul", agent.Addr)...)
	}
	code, out, errs := cli("status")
	for _, want := range []string{"fleet prod\n", "note: read from Consul at " + agent.Addr, "web      ?        1.4.1 1/1      held   -         ffeeddcc  -"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, stdout lacks %q:\n%s\nstderr: %s", code, want, out, errs)
		}
	}
	if !strings.Contains(errs, "no drover answered at "+server+": ") || !strings.Contains(errs, "asking Consul at "+agent.Addr) {
		t.Errorf("status: stderr does not say why it asks Consul: %q", errs)
	}
	if code, out, _ := cli("suspend", "web", "--reason", "by hand"); code != exitOK || !strings.Contains(out, "web: suspended (recorded in Consul at "+agent.Addr) {
		t.Errorf("suspend: exit %d, %q", code, out)
	}
	if kv, _, _ := ac.KV().Get("drover/fleets/prod/suspended/web", nil); kv == nil || !strings.Contains(string(kv.Value), `"reason":"by hand"`) {
		t.Errorf("suspension in Consul: got %v", kv)
	}
	if code, out, _ := cli("retry", "web"); code != exitOK || !strings.Contains(out, "held revision released") {
		t.Errorf("retry: exit %d, %q", code, out)
	}
	if code, _, errs := cli("retry", "web"); code != exitFail || !strings.Contains(errs, "retry web: no held revision") {
		t.Errorf("retry again: exit %d, %q; want 1, nothing held", code, errs)
	}
	if code, out, _ := cli("history", "web"); code != exitOK || !strings.Contains(out, "rollout_failed      -         -           deadline passed") {
		t.Errorf("history: exit %d:\n%s", code, out)
	}
	if code, _, errs := cli("suspend", "db"); code != exitFail || !strings.Contains(errs, `no such service "db" in fleet prod`) {
		t.Errorf("suspend of an unknown service: exit %d, %q", code, errs)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/server"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
)

// fixedSource is a git source that always reads the same commit.
type fixedSource struct{ rev sources.Revision }

func (s fixedSource) Read(context.Context) (sources.Revision, error) { return s.rev, nil }

type noImages struct{}

func (noImages) Get(context.Context, sources.Artifact) (string, error) {
	return "", io.ErrUnexpectedEOF
}

const liveFleet = `services:
  - name: web
    version: "1.4.1"
    replicas: 0
    image:
      kernel: {url: "file:///k", sha256: "` + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `"}
    port: 80
    check: {http: /}
`

// TestCtlRealServer: every operator command through run(), first against server/
// over a real Operator (reconciler, Runner, a real Consul agent, libvirt's test
// driver), then, with that Drover stopped, through the Consul fallback against the
// same agent: both read and write the same records and the same event ring.
func TestCtlRealServer(t *testing.T) {
	agent := testenv.Consul(t)
	log := slog.New(slog.DiscardHandler)
	dc, err := discovery.New(discovery.Config{Address: agent.Addr}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hv, err := libvirt.New(ctx, libvirt.Config{URI: "test:///default", StateDir: t.TempDir()}, log)
	if err != nil {
		testenv.Unavailable(t, "libvirt test driver: %v", err)
	}
	fl, err := sources.Parse("fleet.yaml", []byte(liveFleet))
	if err != nil {
		t.Fatal(err)
	}
	rev := sources.Revision{Commit: strings.Repeat("c0ffee", 6) + "abcd", Ref: "branch:main", Fleet: fl}
	rec, err := reconciler.New(reconciler.Config{Fleet: "live", Hypervisor: hv, Registrar: dc, Health: dc,
		Images: noImages{}, Failures: dc, Events: dc, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	runner := &reconciler.Runner{Source: fixedSource{rev}, Reconciler: rec, Interval: time.Hour, Log: log}
	op := &reconciler.Operator{Reconciler: rec, Runner: runner}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{View: op, Control: op, Listen: ln.Addr().String(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	droverCtx, stopDrover := context.WithCancel(ctx)
	ran, served := make(chan error, 1), make(chan error, 1)
	go func() { ran <- runner.Run(droverCtx) }()
	go func() { served <- srv.Serve(droverCtx, ln) }()
	stop := func() {
		stopDrover()
		for _, c := range []chan error{ran, served} {
			if err := <-c; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("drover stopped with %v", err)
			}
		}
	}
	t.Cleanup(func() {
		if droverCtx.Err() == nil {
			stop()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, _, ok := runner.Desired(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner never read its source")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A held revision as a failed rollout leaves it: this commit, this spec.
	hold := func() {
		raw, _ := json.Marshal(map[string]any{"revision": rev.Commit, "spec_hash": reconciler.SpecHash(fl.Services[0]),
			"reason": "deadline passed", "at": time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)})
		if err := dc.KVPut(ctx, "drover/fleets/live/failed/web", raw); err != nil {
			t.Fatal(err)
		}
	}
	kv := func(key string) []byte {
		t.Helper()
		got, err := dc.KVList(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return got[key]
	}
	url := "http://" + ln.Addr().String()
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		args = append(args, "--server", url)
		if args[0] != "reconcile" { // it has no fallback, nor the flag
			args = append(args, "--consul", agent.Addr)
		}
		return ctl(t, args...)
	}
	type step struct {
		args     []string
		wantCode int
		// wantOut are in stdout, wantErr in stderr.
		wantOut, wantErr []string
		// then checks the effect in Consul.
		then func() string
	}
	steps := func(t *testing.T, fallback bool, list []step) {
		for _, s := range list {
			code, out, errs := cli(s.args...)
			want := s.wantErr
			if fallback && s.wantCode != exitUsage && s.args[0] != "reconcile" {
				want = append(want, "asking Consul at "+agent.Addr)
			}
			ok := code == s.wantCode
			for _, w := range s.wantOut {
				ok = ok && strings.Contains(out, w)
			}
			for _, w := range want {
				ok = ok && strings.Contains(errs, w)
			}
			if !ok {
				t.Errorf("drover %s: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q",
					strings.Join(s.args, " "), code, out, errs, s.wantCode, s.wantOut, want)
			}
			if s.then != nil {
				if problem := s.then(); problem != "" {
					t.Errorf("after drover %s: %s", strings.Join(s.args, " "), problem)
				}
			}
		}
	}
	suspendedIs := func(reason string) func() string {
		return func() string {
			if raw := kv("drover/fleets/live/suspended/web"); !strings.Contains(string(raw), `"reason":"`+reason+`"`) {
				return "suspended/web is " + string(raw) + ", want the reason " + reason
			}
			return ""
		}
	}
	gone := func(key string) func() string {
		return func() string {
			if raw := kv(key); raw != nil {
				return key + " is still " + string(raw)
			}
			return ""
		}
	}

	hold()
	t.Run("drover", func(t *testing.T) {
		steps(t, false, []step{
			{args: []string{"status"}, wantOut: []string{"fleet live  revision c0ffeec0 (branch:main)  leader", "web      1.4.1    0/0", "held", "web: revision c0ffeec0 held since 2026-12-04T19:00:00Z: deadline passed"}},
			{args: []string{"suspend", "web", "--reason", "by the drover"}, wantOut: []string{"web: suspended\n"}, then: suspendedIs("by the drover")},
			{args: []string{"status", "-o", "json"}, wantOut: []string{`"phase": "suspended"`, `"reason": "by the drover"`}},
			{args: []string{"suspend", "nope"}, wantCode: exitFail, wantErr: []string{`404: suspend: no service "nope" in fleet "live"`}},
			{args: []string{"resume", "web"}, wantOut: []string{"web: resumed\n"}, then: gone("drover/fleets/live/suspended/web")},
			{args: []string{"retry", "web"}, wantOut: []string{"web: held revision released"}, then: gone("drover/fleets/live/failed/web")},
			{args: []string{"retry", "web"}, wantCode: exitFail, wantErr: []string{"no held revision"}},
			{args: []string{"history", "web"}, wantOut: []string{"suspended", "by the drover", "resumed", "revision_released", "released by an operator; it had failed: deadline passed"}},
			{args: []string{"reconcile"}, wantOut: []string{"reconcile: a pass was started by the drover at " + url}},
		})
	})

	stop()
	// The rollout fails again while no Drover answers.
	hold()
	t.Run("fallback", func(t *testing.T) {
		steps(t, true, []step{
			{args: []string{"status"}, wantOut: []string{"fleet live\n", "note: read from Consul at " + agent.Addr, "web      ?        0/0            held", "held", "web: revision c0ffeec0 held since 2026-12-04T19:00:00Z: deadline passed"}},
			// What the running Drover stored, read back through the fallback.
			{args: []string{"history", "web"}, wantOut: []string{"by the drover", "resumed", "revision_released"}},
			{args: []string{"suspend", "web", "--reason", "by consul"}, wantOut: []string{"web: suspended (recorded in Consul at " + agent.Addr}, then: suspendedIs("by consul")},
			{args: []string{"suspend", "nope"}, wantCode: exitFail, wantErr: []string{`no such service "nope" in fleet live`}},
			{args: []string{"history", "web", "-o", "json", "--limit", "1"}, wantOut: []string{`"kind":"suspended"`, `"reason":"by consul"`}},
			{args: []string{"resume", "web"}, wantOut: []string{"web: resumed (recorded in Consul"}, then: gone("drover/fleets/live/suspended/web")},
			{args: []string{"retry", "web"}, wantOut: []string{"web: held revision released"}, then: gone("drover/fleets/live/failed/web")},
			{args: []string{"retry", "web"}, wantCode: exitFail, wantErr: []string{"retry web: no held revision"}},
			{args: []string{"reconcile"}, wantCode: exitFail, wantErr: []string{"no drover answered at " + url}},
		})
	})

	// Both wrote one ring: the fallback's events follow the Drover's, numbered on.
	evs, err := rec.History(ctx, "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i, ev := range evs {
		kinds = append(kinds, string(ev.Kind)+":"+ev.Reason)
		if i > 0 && ev.Seq != evs[i-1].Seq+1 {
			t.Errorf("event seq %d follows %d: want gap-free", ev.Seq, evs[i-1].Seq)
		}
	}
	want := []string{"suspended:by the drover", "resumed:", "revision_released:released by an operator; it had failed: deadline passed",
		"suspended:by consul", "resumed:", "revision_released:released by an operator; it had failed: deadline passed"}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Errorf("web's events in Consul:\ngot  %q\nwant %q", kinds, want)
	}
}

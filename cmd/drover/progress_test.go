package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/testenv"
)

// cursorUpClear is how the display goes back over its block to redraw it.
var cursorUpClear = regexp.MustCompile(`\x1b\[[0-9]+A\x1b\[J`)

// TestProgressOnTerminal runs `drover run --once` (in process, the direct driver, real
// Consul and git) with a real pseudo-terminal as its stderr: the rollout is redrawn in
// place, with the log lines above it, and ends converged. The same run on a pipe logs
// plain lines and writes no escape sequence; so does `drover plan`, which on the
// terminal shows the fleet as it is.
func TestProgressOnTerminal(t *testing.T) {
	t.Setenv("TERM", "xterm") // TERM=dumb (some CI runners) turns the display off
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	repo := testenv.NewRepo(t)
	state := testenv.StateDir(t)
	const service = "e2e-tty"
	t.Cleanup(func() { destroyService(t, "qemu", "", state, service) })
	common := append([]string{"--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr, "--driver", "qemu"}, imageRootArgs(images)...)
	runOnce := append([]string{"run", "--once", "--listen", "", "--interval", "1s"}, common...)

	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(testenv.Service{Name: service, Version: "1", Replicas: 1})}, "v1")
	began := time.Now()
	code, out := onTerminal(t, runOnce...)
	took := time.Since(began)
	if code != exitOK {
		t.Fatalf("run --once on a terminal: exit %d\n%q", code, out)
	}
	// Each log line moves the block down once; beyond those, at most one redraw per
	// progressRedraw.
	redraws, logLines := len(cursorUpClear.FindAllString(out, -1)), strings.Count(out, "time=")
	if redraws < 3 || redraws > logLines+int(took/progressRedraw)+2 {
		t.Errorf("run --once on a terminal redrew %d times in place in %s with %d log lines, want at least 3 and at most one per %s besides the log lines:\n%q",
			redraws, took.Round(time.Millisecond), logLines, progressRedraw, out)
	}
	for _, want := range []string{"drover run --once", service + "  rolling-out  1  0/1 passing", `msg="rollout healthy"`} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output has no %q:\n%q", want, out)
		}
	}
	if last := lastFrame(out); !strings.Contains(last, service+"  converged    1  1/1 passing") {
		t.Errorf("last frame is not the converged service:\n%s", last)
	}

	// v2 with stderr a pipe: plain log lines only.
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(testenv.Service{Name: service, Version: "2", Replicas: 1})}, "v2")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var piped bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&piped, r); close(copied) }()
	code = run(runOnce, io.Discard, w)
	w.Close()
	<-copied
	if code != exitOK {
		t.Fatalf("run --once on a pipe: exit %d\n%s", code, piped.String())
	}
	if strings.Contains(piped.String(), "\x1b[") {
		t.Errorf("output on a pipe has escape sequences:\n%q", piped.String())
	}
	for _, want := range []string{
		`msg="rollout progress" service=e2e-tty phase=rolling-out version=2 passing=0 wanted=1`,
		`msg="rollout progress" service=e2e-tty phase=converged version=2 passing=1 wanted=1`,
	} {
		if !strings.Contains(piped.String(), want) {
			t.Errorf("output on a pipe has no %q:\n%s", want, piped.String())
		}
	}

	code, out = onTerminal(t, append([]string{"plan"}, common...)...)
	if code != exitOK || !strings.Contains(lastFrame(out), service+"  converged    2  1/1 passing") {
		t.Errorf("plan on a terminal: exit %d, want 0 and the service converged:\n%q", code, out)
	}
}

// onTerminal runs the CLI in process with a pseudo-terminal as stderr (stdout too, as
// in a shell) and returns what the terminal received.
func onTerminal(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		testenv.Unavailable(t, "no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var out testenv.SyncBuffer
	done := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(done) }() // ends with EIO once tty is closed
	code := run(args, tty, tty)
	tty.Close()
	<-done
	return code, strings.ReplaceAll(out.String(), "\r\n", "\n")
}

// lastFrame is the block as the terminal shows it at the end: what follows the last
// redraw.
func lastFrame(out string) string {
	locs := cursorUpClear.FindAllStringIndex(out, -1)
	if len(locs) == 0 {
		return out
	}
	return out[locs[len(locs)-1][1]:]
}

// The display's own rules, without a fleet: log lines go above the block, the block is
// redrawn only when it changes and only on a tick, lines never wrap.
func TestProgressBlock(t *testing.T) {
	var screen bytes.Buffer
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := &progress{title: "drover run --once", now: func() time.Time { return now }, tty: &screen, width: 60,
		logged: map[string]string{}, since: map[string]time.Time{}, took: map[string]time.Duration{}, started: now}
	state := []reconciler.ServiceStatus{
		{Name: "web", Version: "2", Phase: reconciler.PhaseRollingOut, Progress: reconciler.Progress{Passing: 1, Wanted: 2, Started: now.Add(-3 * time.Second)}},
		{Name: "api", Version: "1", Phase: reconciler.PhaseHeld, Progress: reconciler.Progress{Wanted: 1},
			Held: &reconciler.Hold{Reason: "not healthy within healthy_deadline 10s\nbecause " + strings.Repeat("x", 80)}},
		{Name: "db", Version: "1", Phase: reconciler.PhaseHeld, Held: &reconciler.Hold{Reason: "https://u:hunter2@h/"}},
	}
	read := func(context.Context) ([]reconciler.ServiceStatus, bool, error) { return state, true, nil }

	p.update(context.Background(), read)
	p.render()
	first := screen.String()
	want := "drover run --once  0:00\n" +
		"  web   rolling-out  2  1/2 passing  0:03\n" +
		"  api   held         1  0/1 passing  not healthy within he…\n" +
		"  db    held         1  0/0 passing  https://u:xxxxx@h/\n"
	if first != want {
		t.Fatalf("first frame:\n got %q\nwant %q", first, want)
	}
	p.render()
	if screen.String() != first {
		t.Errorf("an unchanged block was drawn again: %q", screen.String()[len(first):])
	}

	screen.Reset()
	io.WriteString(p, "time=… level=INFO msg=\"vm created\"\n")
	if got, want := screen.String(), "\r\x1b[4A\x1b[J"+"time=… level=INFO msg=\"vm created\"\n"+first; got != want {
		t.Errorf("a log line:\n got %q\nwant %q", got, want)
	}

	screen.Reset()
	now = now.Add(2 * time.Second)
	state[0].Progress.Passing = 2
	state[0].Phase = reconciler.PhaseConverged
	p.update(context.Background(), read)
	p.render()
	if got := screen.String(); !strings.HasPrefix(got, "\r\x1b[4A\x1b[J") || !strings.Contains(got, "  web   converged    2  2/2 passing  0:02\n") {
		t.Errorf("converged frame (took the 2 s it was seen rolling out):\n%q", got)
	}
	for _, line := range strings.Split(strings.TrimSuffix(p.lines[2], "\n"), "\n") {
		if n := len([]rune(line)); n > 59 {
			t.Errorf("line of %d characters on a 60-column terminal: %q", n, line)
		}
	}
}

// Not a terminal: one log line per change of a service, nothing else.
func TestProgressLogsChanges(t *testing.T) {
	var logs bytes.Buffer
	p := newProgress(&logs, "drover run --once")
	if p.tty != nil {
		t.Fatal("a buffer taken for a terminal")
	}
	p.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	st := []reconciler.ServiceStatus{{Name: "web", Version: "2", Phase: reconciler.PhaseRollingOut, Progress: reconciler.Progress{Wanted: 2}}}
	read := func(context.Context) ([]reconciler.ServiceStatus, bool, error) { return st, true, nil }
	p.update(context.Background(), read)
	p.update(context.Background(), read)
	st[0].Progress.Passing = 1
	p.update(context.Background(), read)
	p.render()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "passing=0 wanted=2") || !strings.Contains(lines[1], "passing=1 wanted=2") {
		t.Errorf("want two lines, passing=0 then passing=1, got:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "\x1b[") {
		t.Errorf("escape sequences when not a terminal: %q", logs.String())
	}
}

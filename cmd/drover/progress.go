package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
)

// How often the progress display reads the fleet, and redraws at most.
const (
	progressRead   = 500 * time.Millisecond
	progressRedraw = 100 * time.Millisecond
)

// rolloutsFunc reads each service's progress; ok is false while there is nothing to
// show yet (no revision read).
type rolloutsFunc func(ctx context.Context) (st []reconciler.ServiceStatus, ok bool, err error)

// progress shows each service's rollout while `drover run --once` or `drover plan`
// runs. On a terminal it keeps one line per service (phase, new VMs passing out of
// wanted, elapsed) under the log lines and redraws it in place, at most every
// progressRedraw; log lines written through it appear above the block. Elsewhere it
// logs a plain line whenever a service's phase or count changes.
type progress struct {
	log   *slog.Logger
	title string
	now   func() time.Time
	// secrets are masked in what the terminal shows without the logger (errors and
	// hold reasons), as the logger masks them in log lines.
	secrets *redact.Set

	mu    sync.Mutex
	tty   io.Writer // nil when not a terminal
	width int
	drawn int      // lines of the block on the terminal now
	lines []string // the block as last rendered
	// Per service: the last state logged (not a terminal), when it was first seen
	// rolling out, and how long its rollout took once it converged.
	logged    map[string]string
	since     map[string]time.Time
	took      map[string]time.Duration
	started   time.Time
	services  []reconciler.ServiceStatus
	haveRev   bool
	readError string
}

// newProgress returns a display on w when w is a terminal (then log lines must be
// written through it), else one that logs to log.
func newProgress(w io.Writer, title string) *progress {
	p := &progress{title: title, now: time.Now, logged: map[string]string{}, since: map[string]time.Time{}, took: map[string]time.Duration{}}
	p.started = p.now()
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.tty = f
		p.width = 80
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 10 {
			p.width = cols
		}
	}
	return p
}

// Write passes a log line to the terminal above the block.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
	n, err := p.tty.Write(b)
	p.draw()
	return n, err
}

// run reads and shows the fleet until ctx ends, then shows it once more, as it ended.
// tick paces the redraws (a time.Ticker of progressRedraw outside tests).
func (p *progress) run(ctx context.Context, read rolloutsFunc, tick <-chan time.Time) {
	var lastRead time.Time
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			p.update(final, read)
			cancel()
			p.render()
			return
		case now := <-tick:
			if now.Sub(lastRead) >= progressRead {
				lastRead = now
				p.update(ctx, read)
			}
			p.render()
		}
	}
}

func (p *progress) update(ctx context.Context, read rolloutsFunc) {
	st, ok, err := read(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			p.readError = p.secrets.String(err.Error())
		}
		return
	}
	p.readError, p.haveRev = "", ok
	if !ok {
		return
	}
	now := p.now()
	for _, s := range st {
		switch {
		case s.Phase == reconciler.PhaseRollingOut:
			if _, seen := p.since[s.Name]; !seen {
				p.since[s.Name] = now
			}
			delete(p.took, s.Name)
		case s.Phase == reconciler.PhaseConverged && !p.since[s.Name].IsZero():
			if _, done := p.took[s.Name]; !done {
				p.took[s.Name] = now.Sub(p.since[s.Name])
			}
		}
	}
	p.services = st
	if p.tty == nil {
		p.logChanges()
	}
}

// logChanges logs each service whose phase or counts changed (not a terminal).
func (p *progress) logChanges() {
	for _, s := range p.services {
		key := fmt.Sprintf("%s %s %d/%d", s.Phase, s.Version, s.Progress.Passing, s.Progress.Wanted)
		if p.logged[s.Name] == key {
			continue
		}
		p.logged[s.Name] = key
		attrs := []any{"service", s.Name, "phase", s.Phase, "version", s.Version, "passing", s.Progress.Passing, "wanted", s.Progress.Wanted}
		if d := p.elapsed(s); d > 0 {
			attrs = append(attrs, "elapsed", d.Round(time.Second))
		}
		if s.Held != nil {
			attrs = append(attrs, "reason", s.Held.Reason)
		}
		p.log.Info("rollout progress", attrs...)
	}
}

// elapsed is how long the service has been rolling out, or took to.
func (p *progress) elapsed(s reconciler.ServiceStatus) time.Duration {
	if d, ok := p.took[s.Name]; ok {
		return d
	}
	if s.Phase != reconciler.PhaseRollingOut {
		return 0
	}
	start := s.Progress.Started
	if start.IsZero() {
		start = p.since[s.Name]
	}
	return p.now().Sub(start)
}

// render redraws the block when it changed (a terminal only).
func (p *progress) render() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty == nil {
		return
	}
	lines := p.block()
	if slices.Equal(lines, p.lines) && p.drawn == len(lines) {
		return
	}
	p.erase()
	p.lines = lines
	p.draw()
}

// block renders the lines: a title, then one per service.
func (p *progress) block() []string {
	head := fmt.Sprintf("%s  %s", p.title, fmtElapsed(p.now().Sub(p.started)))
	switch {
	case p.readError != "":
		head += "  (" + p.readError + ")"
	case !p.haveRev:
		head += "  reading the repository…"
	}
	lines := []string{head}
	nameW, verW := 4, 1
	for _, s := range p.services {
		nameW, verW = max(nameW, len(s.Name)), max(verW, len(s.Version))
	}
	for _, s := range p.services {
		line := fmt.Sprintf("  %-*s  %-11s  %-*s", nameW, s.Name, s.Phase, verW, s.Version)
		switch s.Phase {
		case reconciler.PhasePruning:
			total := 0
			for _, v := range s.Versions {
				total += v.Total
			}
			line += fmt.Sprintf("  %d VMs to retire", total)
		default:
			line += fmt.Sprintf("  %d/%d passing", s.Progress.Passing, s.Progress.Wanted)
			if d := p.elapsed(s); d > 0 {
				line += "  " + fmtElapsed(d)
			}
		}
		if s.Held != nil {
			line += "  " + p.secrets.String(s.Held.Reason)
		}
		lines = append(lines, line)
	}
	for i, l := range lines {
		lines[i] = clipLine(l, p.width-1)
	}
	return lines
}

// erase moves up over the block and clears it; the caller holds mu.
func (p *progress) erase() {
	if p.drawn > 0 {
		fmt.Fprintf(p.tty, "\r\x1b[%dA\x1b[J", p.drawn)
		p.drawn = 0
	}
}

// draw writes the block; the caller holds mu.
func (p *progress) draw() {
	if len(p.lines) == 0 {
		return
	}
	io.WriteString(p.tty, strings.Join(p.lines, "\n")+"\n")
	p.drawn = len(p.lines)
}

// clipLine cuts a line to n characters, so that it never wraps and the block keeps
// its height; control characters (from a reason) become spaces.
func clipLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d/time.Minute), int(d%time.Minute/time.Second))
}

// start runs the display in the background; stop ends it after its last frame.
func (p *progress) start(ctx context.Context, read rolloutsFunc) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	tick := time.NewTicker(progressRedraw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx, read, tick.C)
	}()
	return func() {
		cancel()
		<-done
		tick.Stop()
	}
}

// recordingSource remembers the last revision read, for the progress display.
type recordingSource struct {
	reconciler.Source
	last atomic.Pointer[sources.Revision]
}

func (s *recordingSource) Read(ctx context.Context) (sources.Revision, error) {
	rev, err := s.Source.Read(ctx)
	if err == nil {
		s.last.Store(&rev)
	}
	return rev, err
}

// rollouts reads the progress of the fleet at the last revision read.
func (s *recordingSource) rollouts(r *reconciler.Reconciler) rolloutsFunc {
	return func(ctx context.Context) ([]reconciler.ServiceStatus, bool, error) {
		rev := s.last.Load()
		if rev == nil {
			return nil, false, nil
		}
		st, err := r.Rollouts(ctx, *rev)
		return st, true, err
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/drover-dev/drover/client"
	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/internal/backoff"
	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/internal/secretfile"
	"github.com/drover-dev/drover/reconciler"
)

// The operator's commands: they talk to a running Drover's API, and, except
// reconcile, to Consul directly when no Drover answers at all.

// fleetAPI is what status, history, suspend, resume and retry need: a running Drover
// (client.Client) or, when none answers, Consul (client.Consul, the reconciler's
// offline Operator).
type fleetAPI interface {
	Status(ctx context.Context) (reconciler.FleetStatus, error)
	History(ctx context.Context, service string, limit int) ([]reconciler.Event, error)
	Suspend(ctx context.Context, service, reason string) error
	Resume(ctx context.Context, service string) error
	Retry(ctx context.Context, service string) error
}

var (
	_ fleetAPI = (*client.Client)(nil)
	_ fleetAPI = (*client.Consul)(nil)
)

// ctlCommand describes one operator command for its usage and flags.
type ctlCommand struct {
	args     string // positional arguments, for the usage line
	summary  string
	fallback bool // Consul answers when no Drover does
	// positional is how many arguments it takes: min and max.
	minArgs, maxArgs int
}

var ctlCommands = map[string]ctlCommand{
	"status":    {"", "per service: desired version, instances passing/total per version, phase, progress, held revision, suspension", true, 0, 0},
	"history":   {"[SERVICE]", "the fleet's events, oldest first; --watch follows them live", true, 0, 1},
	"suspend":   {"SERVICE", "leave SERVICE exactly as it is (no rollout, repair, chaos or prune) until resumed", true, 1, 1},
	"resume":    {"SERVICE", "lift a suspension", true, 1, 1},
	"retry":     {"SERVICE", "release SERVICE's held (failed) revision so the next pass tries it again", true, 1, 1},
	"reconcile": {"", "run a pass now (fetching first)", false, 0, 0},
}

// ctlOptions are the operator commands' flags; each also reads DROVER_<FLAG>.
type ctlOptions struct {
	server    string
	tokenFile string
	consul    string
	fleet     string
	timeout   time.Duration
	output    string
	// history
	limit int
	watch bool
	// suspend
	reason string
}

func (o *ctlOptions) register(fs *flag.FlagSet, cmd string) {
	fs.StringVar(&o.server, "server", client.DefaultServer, "the running Drover's API: its --listen address as a URL")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the Drover wants (its --listen-token-file)")
	timeoutHelp := "bound on each request to the Drover"
	if ctlCommands[cmd].fallback {
		timeoutHelp += ", and to Consul in the fallback"
	}
	fs.DurationVar(&o.timeout, "timeout", client.DefaultTimeout, timeoutHelp)
	if ctlCommands[cmd].fallback {
		fs.StringVar(&o.consul, "consul", "127.0.0.1:8500", "Consul agent HTTP address, used only when no Drover answers at --server\n"+
			"(the token comes from CONSUL_HTTP_TOKEN)")
		fs.StringVar(&o.fleet, "fleet", "", "the fleet's name, for the Consul fallback; default: the only fleet Consul holds")
	}
	if cmd == "status" || cmd == "history" {
		fs.StringVar(&o.output, "output", "text", "output format: text or json")
		fs.StringVar(&o.output, "o", "text", "shorthand for --output")
	}
	switch cmd {
	case "history":
		fs.IntVar(&o.limit, "limit", 50, "show the last N events (0: all the fleet keeps)")
		fs.BoolVar(&o.watch, "watch", false, "after the history, follow new events live (reconnects with backoff; Ctrl-C ends)")
	case "suspend":
		fs.StringVar(&o.reason, "reason", "", "why, shown in status and history")
	}
}

func (o *ctlOptions) validate() error {
	var problems []string
	if o.output != "text" && o.output != "json" && o.output != "" {
		problems = append(problems, fmt.Sprintf("-o %q: want text or json", o.output))
	}
	if o.limit < 0 {
		problems = append(problems, fmt.Sprintf("--limit %d: want 0 or more", o.limit))
	}
	if o.timeout < 100*time.Millisecond {
		problems = append(problems, fmt.Sprintf("--timeout %s: want at least 100ms", o.timeout))
	}
	if o.fleet != "" {
		if err := reconciler.ValidFleet(o.fleet); err != nil {
			problems = append(problems, "--fleet: "+err.Error())
		}
	}
	if len(o.reason) > maxReason || strings.IndexFunc(o.reason, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		problems = append(problems, fmt.Sprintf("--reason: want at most %d printable bytes", maxReason))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// maxReason is the reconciler's bound on a suspension's reason.
const maxReason = 512

func ctlUsage(w io.Writer, name string, cmd ctlCommand, fs *flag.FlagSet) func() {
	return func() {
		fmt.Fprintf(w, "Usage: drover %s [flags] %s\n\n%s.\n\n", name, cmd.args, cmd.summary)
		if cmd.fallback {
			fmt.Fprint(w, "Talks to the Drover at --server. When none answers at all (refused, timed out), it\n"+
				"reads and writes Consul at --consul directly instead, where the fleet's events, holds and\n"+
				"suspensions are kept (a 401 or 404 is an answer: no fallback then).\n\n")
		} else {
			fmt.Fprint(w, "Needs a running Drover at --server: there is no Consul fallback.\n\n")
		}
		fmt.Fprintln(w, "Flags (each also read from DROVER_<FLAG>):")
		fs.PrintDefaults()
	}
}

// parseInterspersed parses flags before and after the positional arguments
// (`drover suspend web --reason x`), which flag.Parse alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runCtl(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	cmd := ctlCommands[name]
	var o ctlOptions
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = ctlUsage(stderr, name, cmd, fs)
	o.register(fs, name)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		fmt.Fprintf(stderr, "drover %s: want %s, got %q\n", name, orNone(cmd.args), redact.String(strings.Join(pos, " ")))
		return exitUsage
	}
	if err := envDefaults(fs); err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", name, err)
		return exitUsage
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", name, err)
		return exitUsage
	}
	c, err := o.client()
	if err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", name, err)
		return exitUsage
	}
	service := ""
	if len(pos) > 0 {
		service = pos[0]
	}
	a := ctlAction{name: name, opts: o, service: service, stdout: stdout, stderr: stderr}
	if name == "reconcile" {
		err = c.Reconcile(ctx)
		if err == nil {
			fmt.Fprintf(stdout, "reconcile: a pass was started by the drover at %s\n", c.Server())
		}
	} else {
		err = a.do(ctx, c)
		if errors.Is(err, client.ErrUnreachable) {
			fmt.Fprintf(stderr, "drover %s: %v; asking Consul at %s directly\n", name, err, o.consul)
			err = a.fallback(ctx)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", name, err)
		return exitFail
	}
	return exitOK
}

func orNone(s string) string {
	if s == "" {
		return "no arguments"
	}
	return s
}

// client builds the API client, reading the token file (bounded, regular file only).
func (o ctlOptions) client() (*client.Client, error) {
	tok := ""
	if o.tokenFile != "" {
		t, err := secretfile.ReadLine(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		tok = t
	}
	return client.New(client.Config{Server: o.server, Token: tok, Timeout: o.timeout})
}

// ctlAction is one run of status, history, suspend, resume or retry.
type ctlAction struct {
	name    string
	opts    ctlOptions
	service string
	stdout  io.Writer
	stderr  io.Writer
	// fromConsul is set once the fallback answers: the output says so.
	fromConsul string
}

// fallback runs the action against Consul after no Drover answered.
func (a *ctlAction) fallback(ctx context.Context) error {
	reg, err := discovery.New(discovery.Config{Address: a.opts.consul, CallTimeout: a.opts.timeout}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	a.fromConsul = a.opts.consul
	err = a.do(ctx, &client.Consul{Store: reg, Fleet: a.opts.fleet, Addr: a.opts.consul})
	if errors.Is(err, discovery.ErrUnavailable) {
		return fmt.Errorf("consul did not answer either: %w", err)
	}
	return err
}

func (a *ctlAction) do(ctx context.Context, api fleetAPI) error {
	switch a.name {
	case "status":
		st, err := api.Status(ctx)
		if err != nil {
			return err
		}
		return printStatus(a.stdout, st, a.opts.output)
	case "history":
		return a.history(ctx, api)
	case "suspend":
		if err := api.Suspend(ctx, a.service, a.opts.reason); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: suspended%s\n", a.service, a.where())
	case "resume":
		if err := api.Resume(ctx, a.service); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: resumed%s\n", a.service, a.where())
	case "retry":
		if err := api.Retry(ctx, a.service); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s: held revision released; the next pass tries it again%s\n", a.service, a.where())
	}
	return nil
}

func (a *ctlAction) where() string {
	if a.fromConsul == "" {
		return ""
	}
	return " (recorded in Consul at " + a.fromConsul + "; the fleet's Drover acts on it at its next pass)"
}

func (a *ctlAction) history(ctx context.Context, api fleetAPI) error {
	evs, err := api.History(ctx, a.service, a.opts.limit)
	if err != nil {
		return err
	}
	p := newEventPrinter(a.stdout, a.opts.output)
	var last uint64
	for _, ev := range evs {
		p.print(ev)
		last = max(last, ev.Seq)
	}
	if !a.opts.watch {
		return nil
	}
	switch api := api.(type) {
	case *client.Client:
		return api.Watch(ctx, a.service, client.WatchOptions{After: last, OnRetry: func(err error, wait time.Duration) {
			fmt.Fprintf(a.stderr, "drover history: %v; reconnecting in %s\n", err, wait.Round(time.Millisecond))
		}}, p.print)
	default:
		return pollHistory(ctx, api, a.service, last, p.print, a.stderr)
	}
}

// consulPoll is how often history --watch reads the ring when only Consul answers.
const consulPoll = 2 * time.Second

// pollHistory follows the event ring in Consul when no Drover serves the live stream.
func pollHistory(ctx context.Context, api fleetAPI, service string, last uint64, emit func(reconciler.Event), stderr io.Writer) error {
	bo := backoff.Backoff{Min: consulPoll, Max: 30 * time.Second}
	wait := consulPoll
	for backoff.Sleep(ctx, wait) {
		evs, err := api.History(ctx, service, 0)
		if err != nil {
			wait = bo.Next()
			fmt.Fprintf(stderr, "drover history: %v; retrying in %s\n", err, wait.Round(time.Millisecond))
			continue
		}
		bo.Reset()
		wait = consulPoll
		for _, ev := range evs {
			if ev.Seq > last {
				emit(ev)
				last = ev.Seq
			}
		}
	}
	return nil
}

// Command drover is the GitOps reconciler for bare VMs: `drover run` tracks a git
// repository and keeps the VMs it describes running; `plan` shows what a pass would do;
// `validate` checks a fleet file; `version` prints the build.
//
// This package only turns flags into constructors and calls Run(ctx).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/sources"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `drover — GitOps for bare VMs

Usage:
  drover run      --repo URL|PATH [flags]   track the repository and reconcile the fleet
  drover plan     --repo URL|PATH [flags]   print what a pass would do; change nothing
  drover validate [FILE|DIR]                check a fleet file (default fleet.yaml)
  drover schema                             print the fleet file's JSON Schema (for editors)
  drover version                            print the version

Operating a running Drover (through its API at --server, default http://127.0.0.1:7070):
  drover status [-o json]                   the fleet at a glance, per service          *
  drover history [SERVICE] [--watch]        events, oldest first; --watch follows live  *
  drover suspend SERVICE [--reason TEXT]    leave SERVICE exactly as it is until resumed *
  drover resume SERVICE                     lift a suspension                           *
  drover retry SERVICE                      release SERVICE's held revision             *
  drover reconcile                          run a pass now (needs a running Drover)
* when no Drover answers at all, these read and write Consul (--consul) directly.

On a terminal, run --once and plan show each service's rollout as it goes.
Run 'drover COMMAND -h' for a command's flags. Every flag can also be set with
DROVER_<FLAG> in the environment (DROVER_REPO, DROVER_SERVER, DROVER_LIBVIRT_URI, …).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd, rest := args[0], args[1:]; cmd {
	case "run", "plan":
		return runDaemon(ctx, cmd, rest, stdout, stderr)
	case "validate":
		return runValidate(rest, stdout, stderr)
	case "schema":
		return runSchema(rest, stdout, stderr)
	case "status", "history", "suspend", "resume", "retry", "reconcile":
		return runCtl(ctx, cmd, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "drover %s\n", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "drover: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: drover validate [FILE|DIR]\n\nExit 0 if the fleet is valid; else print every error as file:line:col: message and exit 1.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	path := "fleet.yaml"
	if fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	fleet, err := sources.LoadPath(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: valid, %d service(s)\n", path, len(fleet.Services))
	return exitOK
}

func runSchema(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: drover schema > fleet.schema.json\n\nPrint the JSON Schema (draft 2020-12) of the fleet file, for editors; drover validate stays the authority.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if _, err := stdout.Write(sources.Schema()); err != nil {
		fmt.Fprintf(stderr, "drover schema: %v\n", err)
		return exitFail
	}
	return exitOK
}

func runDaemon(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	withRun := cmd == "run"
	var o options
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, withRun)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "drover %s: unexpected arguments %q\n", cmd, redact.String(strings.Join(fs.Args(), " ")))
		return exitUsage
	}
	if err := envDefaults(fs); err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", cmd, err)
		return exitUsage
	}
	if err := o.validate(withRun); err != nil {
		fmt.Fprintf(stderr, "drover %s: %v\n", cmd, err)
		return exitUsage
	}
	secrets := redact.NewSet(redact.URLSecrets(o.repo)...)
	// plan and run --once show each service's rollout as it goes: on a terminal in
	// place, under the log lines (which then go through it); elsewhere as log lines.
	var prog *progress
	logOut := stderr
	if !withRun || o.once {
		title := "drover plan"
		if withRun {
			title = "drover run --once"
		}
		prog = newProgress(stderr, title)
		prog.secrets = secrets
		if prog.tty != nil {
			logOut = prog
		}
	}
	log := newLogger(logOut, o.logFormat, o.logLevel, secrets)

	d, err := build(ctx, o, log, secrets)
	if err != nil {
		log.Error("start-up failed", "err", err)
		return exitFail
	}
	defer d.close()
	stopProgress := func() {}
	if prog != nil {
		prog.log = log
		stopProgress = prog.start(ctx, d.tracked.rollouts(d.reconciler))
	}

	if !withRun {
		text, err := d.plan(ctx)
		stopProgress()
		if err != nil {
			log.Error("plan failed", "err", err)
			return exitFail
		}
		if _, err := io.WriteString(stdout, text); err != nil {
			log.Error("plan failed", "err", err)
			return exitFail
		}
		return exitOK
	}
	err = d.run(ctx)
	stopProgress()
	if err != nil {
		log.Error("drover run failed", "err", err)
		return exitFail
	}
	return exitOK
}

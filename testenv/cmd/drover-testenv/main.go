// Command drover-testenv prepares the real components Drover's tests and demo use: the
// test golden images, libvirtd, and (registered from other files) a Consul agent.
//
// Usage:
//
//	drover-testenv <command> [flags]
//
// Each command documents its flags under `drover-testenv <command> -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: run gets the arguments after its name.
type command struct {
	summary string
	run     func(ctx context.Context, log *slog.Logger, args []string) error
}

// commands is filled from init() in each subcommand's file, so a subcommand is added by
// adding a file.
var commands = map[string]command{}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() == 0 {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[flag.Arg(0)]
	if !ok {
		fmt.Fprintf(os.Stderr, "drover-testenv: unknown command %q\n", flag.Arg(0))
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, log, flag.Args()[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "drover-testenv %s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "Usage: drover-testenv <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun `drover-testenv <command> -h` for a command's flags.\n")
}

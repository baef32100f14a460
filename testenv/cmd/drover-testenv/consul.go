package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/drover-dev/drover/testenv"
)

func init() {
	commands["consul"] = command{
		summary: "build the Consul agent (cached) and run a dev agent on 127.0.0.1 until interrupted",
		run:     runConsul,
	}
}

func runConsul(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("consul", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: drover-testenv consul [-http-port 8500] [-build-only] [-cache DIR]\n\n"+
			"Builds the Consul agent under DIR/bin if it is missing, then runs a dev-mode agent\n"+
			"on 127.0.0.1 in the foreground until SIGINT or SIGTERM. Its state is in memory.\n"+
			"Every other port (DNS, serf, server, gRPC) is a free one, so it never collides\n"+
			"with another agent. The HTTP address is printed on stdout once it is ready.\n\n")
		fs.PrintDefaults()
	}
	httpPort := fs.Int("http-port", 8500, "HTTP API port on 127.0.0.1 (0 picks a free one)")
	buildOnly := fs.Bool("build-only", false, "build the agent, print its path and exit")
	cache := fs.String("cache", "", "cache directory (default $DROVER_TESTENV_CACHE, else .cache in the repository root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *httpPort < 0 || *httpPort > 65535 {
		return fmt.Errorf("-http-port %d: want 0..65535", *httpPort)
	}
	dir := *cache
	if dir == "" {
		var err error
		if dir, err = testenv.CacheDir(); err != nil {
			return err
		}
	}
	bin, err := testenv.ConsulBinary(ctx, dir, log)
	if err != nil {
		return err
	}
	if *buildOnly {
		fmt.Println(bin)
		return nil
	}

	agent, err := testenv.StartConsul(ctx, bin, testenv.ConsulOptions{
		Dir:      filepath.Join(dir, "consul"),
		HTTPPort: *httpPort,
	}, log)
	if err != nil {
		return err
	}
	fmt.Printf("CONSUL_HTTP_ADDR=%s\n", agent.Addr)
	log.Info("consul agent running; interrupt to stop", "addr", agent.Addr, "log", agent.LogFile)
	select {
	case <-ctx.Done():
		log.Info("stopping consul agent", "addr", agent.Addr)
		return agent.Stop()
	case <-agent.Exited():
		return fmt.Errorf("consul agent %s exited on its own; see %s", agent.Addr, agent.LogFile)
	}
}

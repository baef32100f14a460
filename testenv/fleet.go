package testenv

import (
	"fmt"
	"strings"
	"time"
)

// Service describes one service of a test or demo fleet file running the test guest.
type Service struct {
	Name      string
	Version   string
	Replicas  int
	Unhealthy bool // boot the initrd that never serves /healthz
	MemoryMiB int  // default 128

	MinHealthyTime  time.Duration
	HealthyDeadline time.Duration // default 90s
	Drain           time.Duration
	ShutdownTimeout time.Duration // default 5s
	AutoRollback    *bool         // default true
	CheckInterval   time.Duration // default 1s (Consul runs checks at most once a second)

	Strategy       string // default blue-green
	MaxSurge       int    // with rolling
	MaxUnavailable int    // with rolling
	Canary         int    // with canary
	// Network, when set, is the body of the service's network block, verbatim, e.g.
	// "mode: bridge\nbridge: drbr0"; default "mode: user".
	Network string
	// CmdlineExtra is appended to the kernel command line (drover.net=dhcp, say).
	CmdlineExtra string
	// Chaos, when set, is rendered as the service's chaos block verbatim, e.g.
	// "interval: 10s".
	Chaos string
}

// FleetYAML renders a fleet file (contract version 1) for services running the test
// guest images: a kernel, an initrd and a cmdline carrying the version.
func (g GuestImages) FleetYAML(services ...Service) string {
	var b strings.Builder
	if len(services) == 0 {
		return "services: []\n"
	}
	b.WriteString("services:\n")
	for _, s := range services {
		initrd := g.Initrd
		if s.Unhealthy {
			initrd = g.UnhealthyInitrd
		}
		mem := s.MemoryMiB
		if mem == 0 {
			mem = 128
		}
		deadline := or(s.HealthyDeadline, 90*time.Second)
		shutdown := or(s.ShutdownTimeout, 5*time.Second)
		interval := or(s.CheckInterval, time.Second)
		rollback := s.AutoRollback == nil || *s.AutoRollback
		network := s.Network
		if network == "" {
			network = "mode: user"
		}
		strategy := s.Strategy
		if strategy == "" {
			strategy = "blue-green"
		}
		fmt.Fprintf(&b, `  - name: %s
    version: %q
    replicas: %d
    cpus: 1
    memory: %dMiB
    image:
      kernel: {url: %q, sha256: %q}
      initrd: {url: %q, sha256: %q}
      cmdline: %q
    network:
      %s
    port: %d
    check:
      http: /healthz
      interval: %s
      timeout: %s
    update:
      strategy: %s
      min_healthy_time: %s
      healthy_deadline: %s
      drain: %s
      shutdown_timeout: %s
      auto_rollback: %t
`, s.Name, s.Version, s.Replicas, mem,
			g.Kernel.URL(), g.Kernel.SHA256, initrd.URL(), initrd.SHA256, strings.TrimSpace(GuestCmdline(s.Version)+" "+s.CmdlineExtra),
			strings.ReplaceAll(strings.TrimSpace(network), "\n", "\n      "), GuestPort, interval, interval, strategy, s.MinHealthyTime, deadline, s.Drain, shutdown, rollback)
		switch s.Strategy {
		case "rolling":
			fmt.Fprintf(&b, "      max_surge: %d\n      max_unavailable: %d\n", s.MaxSurge, s.MaxUnavailable)
		case "canary":
			fmt.Fprintf(&b, "      canary: %d\n", s.Canary)
		}
		if s.Chaos != "" {
			fmt.Fprintf(&b, "    chaos:\n      %s\n", strings.ReplaceAll(strings.TrimSpace(s.Chaos), "\n", "\n      "))
		}
	}
	return b.String()
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

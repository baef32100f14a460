package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"testing"
	"time"
)

// LibvirtURI is the libvirt connection tests and the demo use.
const LibvirtURI = "qemu:///system"

// libvirtdStartTimeout bounds the wait for a freshly started libvirtd to answer.
const libvirtdStartTimeout = 30 * time.Second

// EnsureLibvirtd makes qemu:///system answer, starting virtlogd and libvirtd as daemons
// when it does not: machines without systemd (containers, CI runners) have nothing else
// that would start them. It must run as root to start them.
func EnsureLibvirtd(ctx context.Context, log *slog.Logger) error {
	if _, err := exec.LookPath("virsh"); err != nil {
		return fmt.Errorf("ensure libvirtd: virsh not found (install libvirt-clients): %w", err)
	}
	if virshConnect(ctx) == nil {
		return nil
	}
	for _, bin := range []string{"virtlogd", "libvirtd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("ensure libvirtd: %s not found (install libvirt-daemon-system and qemu-system-x86): %w", bin, err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("ensure libvirtd: qemu-system-x86_64 not found (install qemu-system-x86): %w", err)
	}
	// Each refuses to start a second copy through its pid file, so starting both
	// unconditionally is safe even if only one was down.
	for _, bin := range []string{"virtlogd", "libvirtd"} {
		log.InfoContext(ctx, "starting daemon", "daemon", bin)
		if out, err := exec.CommandContext(ctx, bin, "-d").CombinedOutput(); err != nil {
			log.WarnContext(ctx, "daemon start failed", "daemon", bin, "err", err, "output", tail(out))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, libvirtdStartTimeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := virshConnect(ctx)
		if err == nil {
			log.InfoContext(ctx, "libvirtd is answering", "uri", LibvirtURI)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure libvirtd: %s did not answer within %s: %w", LibvirtURI, libvirtdStartTimeout, errors.Join(err, ctx.Err()))
		case <-tick.C:
		}
	}
}

// virshConnect checks the URI answers. It asks only for the URI: `virsh version` also
// probes the QEMU binary and takes 5-10 s on a busy two-core machine.
func virshConnect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "virsh", "-c", LibvirtURI, "uri").CombinedOutput()
	if err != nil {
		return fmt.Errorf("virsh -c %s uri: %w: %s", LibvirtURI, err, tail(out))
	}
	return nil
}

// Libvirt returns the URI of a running libvirtd for a test, starting one if needed, or
// stops the test with Unavailable.
func Libvirt(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*libvirtdStartTimeout)
	defer cancel()
	if err := EnsureLibvirtd(ctx, slog.New(slog.NewTextHandler(tbLogWriter{t}, nil))); err != nil {
		Unavailable(t, "libvirtd: %v", err)
	}
	return LibvirtURI
}

package testenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
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
	if err := applyKVMUdevRule(log); err != nil {
		return fmt.Errorf("ensure libvirtd: %w", err)
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

// applyKVMUdevRule gives /dev/kvm the owner and mode Debian's udev rule sets
// (50-udev-default.rules: GROUP="kvm", MODE="0660"). Machines without udev (containers,
// CI runners) leave it root-only, and then libvirt, running as root, finds KVM usable
// while QEMU's capability probe, running as libvirt-qemu (in group kvm), cannot open it:
// libvirt judges its capabilities cache stale on every call ("KVM was not enabled when
// probing, but it should be usable now") and each define or start takes seconds.
func applyKVMUdevRule(log *slog.Logger) error {
	const dev = "/dev/kvm"
	st, err := os.Stat(dev)
	if err != nil {
		return nil // no KVM: libvirt and QEMU agree on TCG
	}
	grp, err := user.LookupGroup("kvm")
	if err != nil {
		return nil // no kvm group: nothing to apply
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return fmt.Errorf("kvm group id %q: %w", grp.Gid, err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if ok && int(sys.Gid) == gid && st.Mode().Perm()&0o060 == 0o060 {
		return nil
	}
	log.Info("applying udev's rule to /dev/kvm (root:kvm 0660) so libvirt's QEMU can probe it")
	if err := os.Chown(dev, 0, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dev, err)
	}
	if err := os.Chmod(dev, 0o660); err != nil {
		return fmt.Errorf("chmod %s: %w", dev, err)
	}
	return nil
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

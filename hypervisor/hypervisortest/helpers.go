package hypervisortest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// Touch makes an empty file called name in dir and returns its path.
func Touch(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ValidSpec is a kernel-booted, user-networked spec that passes validation: its files
// exist, but they are empty and boot nothing.
func ValidSpec(t testing.TB, name string) hypervisor.Spec {
	t.Helper()
	dir := t.TempDir()
	return hypervisor.Spec{
		Name:      name,
		CPUs:      1,
		MemoryMiB: 128,
		Kernel:    Touch(t, dir, "vmlinuz"),
		Initrd:    Touch(t, dir, "initrd"),
		Cmdline:   "console=ttyS0 drover.version=1.0",
		Network:   hypervisor.Network{Mode: hypervisor.NetworkUser},
		GuestPort: 8080,
		Meta: hypervisor.Metadata{
			Service:  "web",
			SpecHash: "3f2a91c0aa",
			Revision: "abc123",
			Version:  "1.0",
			Created:  time.Date(2025, 11, 25, 20, 0, 0, 0, time.UTC),
		},
	}
}

// DestroyAtEnd removes a VM whatever the test did with it, and says so if it cannot.
func DestroyAtEnd(t testing.TB, d Driver, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Destroy(ctx, name); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
			t.Errorf("cleanup: destroy %s: %v", name, err)
		}
	})
}

// MakeGolden makes a small blank golden disk of format (raw or qcow2), in a directory
// a hypervisor running as another user (libvirt's QEMU) can reach. It needs qemu-img:
// a caller that should skip without it checks first, as Conformance does.
func MakeGolden(t testing.TB, format string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("make golden disk: qemu-img not installed (install qemu-utils): %v", err)
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "golden."+format)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", format, p, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create %s: %v: %s", p, err, out)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// SHA256File is the hex sha256 of the file at p: tests use it to show a golden image
// was never written.
func SHA256File(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

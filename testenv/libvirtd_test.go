package testenv

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func TestLibvirt(t *testing.T) {
	uri := Libvirt(t)
	out, err := exec.CommandContext(t.Context(), "virsh", "-c", uri, "uri").CombinedOutput()
	if err != nil {
		t.Fatalf("virsh -c %s uri: %v\n%s", uri, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != LibvirtURI {
		t.Errorf("connected URI: want %s, got %s", LibvirtURI, got)
	}
}

// TestImagesReadableByLibvirtQEMU checks the user libvirt runs QEMU as can read the
// images through every parent directory of the cache; otherwise every libvirt boot
// fails with a permission error far from its cause.
func TestImagesReadableByLibvirtQEMU(t *testing.T) {
	const qemuUser = "libvirt-qemu" // Debian's default for qemu:///system
	if _, err := user.Lookup(qemuUser); err != nil {
		Unavailable(t, "user %s (install libvirt-daemon-system): %v", qemuUser, err)
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "switching to %s needs root", qemuUser)
	}
	imgs := Images(t)
	for _, f := range []File{imgs.Kernel, imgs.Initrd, imgs.UnhealthyInitrd} {
		out, err := exec.CommandContext(t.Context(), "runuser", "-u", qemuUser, "--", "head", "-c", "1", f.Path).CombinedOutput()
		if err != nil {
			ns, _ := exec.Command("namei", "-l", f.Path).CombinedOutput()
			t.Errorf("%s cannot read %s: %v %s\npermissions along the path:\n%s", qemuUser, f.Path, err, out, ns)
		}
	}
}

// TestEnsureLibvirtdMissingBinaries checks the error tells the operator which Debian
// packages to install.
func TestEnsureLibvirtdMissingBinaries(t *testing.T) {
	// A virsh that can never connect, and no daemons: the state of a machine with only
	// libvirt-clients installed.
	onlyClient := t.TempDir()
	if err := os.WriteFile(filepath.Join(onlyClient, "virsh"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       []string
	}{
		{"nothing", t.TempDir(), []string{"virsh", "libvirt-clients"}},
		{"client only", onlyClient, []string{"libvirtd", "libvirt-daemon-system", "qemu-system-x86"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			err := EnsureLibvirtd(context.Background(), slog.New(slog.DiscardHandler))
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("EnsureLibvirtd with PATH=%s: want an error naming %q, got %v", tt.path, w, err)
				}
			}
		})
	}
}

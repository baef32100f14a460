package hypervisor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "adir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	all := []string{hypervisor.NetworkUser, hypervisor.NetworkBridge, hypervisor.NetworkLibvirt}
	userOnly := []string{hypervisor.NetworkUser}
	tests := []struct {
		name     string
		networks []string
		mutate   func(*hypervisor.Spec)
		wantErr  string // substring; "" means valid
	}{
		{"valid", all, func(*hypervisor.Spec) {}, ""},
		{"valid, user only", userOnly, func(*hypervisor.Spec) {}, ""},
		{"disk only", all, func(s *hypervisor.Spec) {
			s.Kernel, s.Initrd, s.Cmdline = "", "", ""
			s.Disk = hypervisortest.Touch(t, dir, "golden.img")
		}, ""},
		{"bridge", all, func(s *hypervisor.Spec) {
			s.Network = hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "br0"}
		}, ""},
		{"network", all, func(s *hypervisor.Spec) {
			s.Network = hypervisor.Network{Mode: hypervisor.NetworkLibvirt, Network: "default"}
		}, ""},
		{"no name", all, func(s *hypervisor.Spec) { s.Name = "" }, "no name"},
		{"name with slash", all, func(s *hypervisor.Spec) { s.Name = "../etc" }, `name "../etc"`},
		{"name with dot", all, func(s *hypervisor.Spec) { s.Name = "web.1" }, `name "web.1"`},
		{"name too long", all, func(s *hypervisor.Spec) { s.Name = strings.Repeat("a", 65) }, "at most 64"},
		{"zero cpus", all, func(s *hypervisor.Spec) { s.CPUs = 0 }, "cpus 0"},
		{"negative cpus", all, func(s *hypervisor.Spec) { s.CPUs = -2 }, "cpus -2"},
		{"tiny memory", all, func(s *hypervisor.Spec) { s.MemoryMiB = 1 }, "memory 1 MiB: want at least 16 MiB"},
		{"nothing to boot", all, func(s *hypervisor.Spec) { s.Kernel, s.Initrd, s.Cmdline = "", "", "" }, "no kernel and no disk"},
		{"initrd without kernel", all, func(s *hypervisor.Spec) { s.Kernel, s.Cmdline = "", ""; s.Disk = hypervisortest.Touch(t, dir, "d") }, "initrd without a kernel"},
		{"cmdline without kernel", all, func(s *hypervisor.Spec) { s.Kernel, s.Initrd = "", ""; s.Disk = hypervisortest.Touch(t, dir, "d") }, "cmdline without a kernel"},
		{"relative kernel", all, func(s *hypervisor.Spec) { s.Kernel = "vmlinuz" }, `kernel "vmlinuz": want an absolute path`},
		{"missing initrd", all, func(s *hypervisor.Spec) { s.Initrd = filepath.Join(dir, "nope") }, "initrd: stat"},
		{"disk is a directory", all, func(s *hypervisor.Spec) { s.Disk = sub }, "not a regular file"},
		{"no guest port", all, func(s *hypervisor.Spec) { s.GuestPort = 0 }, "guest port 0"},
		{"guest port too big", all, func(s *hypervisor.Spec) { s.GuestPort = 70000 }, "guest port 70000"},
		{"no network mode", all, func(s *hypervisor.Spec) { s.Network.Mode = "" }, "no network mode"},
		{"unknown network mode", all, func(s *hypervisor.Spec) { s.Network.Mode = "slirp" }, `network mode "slirp": want user, bridge or network`},
		{"unknown network mode, user only", userOnly, func(s *hypervisor.Spec) { s.Network.Mode = "tap" }, `network mode "tap": want user`},
		{"bridge, user only", userOnly, func(s *hypervisor.Spec) {
			s.Network = hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "br0"}
		}, `network mode "bridge": want user`},
		{"bridge without bridge", all, func(s *hypervisor.Spec) { s.Network = hypervisor.Network{Mode: hypervisor.NetworkBridge} }, "without a bridge"},
		{"network without name", all, func(s *hypervisor.Spec) { s.Network = hypervisor.Network{Mode: hypervisor.NetworkLibvirt} }, "without a network name"},
		{"no service", all, func(s *hypervisor.Spec) { s.Meta.Service = "" }, "no service"},
		{"no spec hash", all, func(s *hypervisor.Spec) { s.Meta.SpecHash = "" }, "no spec hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "web-3f2a91c0-a1")
			tt.mutate(&spec)
			err := spec.Validate(tt.networks...)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: want no error, got %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate: want error containing %q, got nil", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate: want error containing %q, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := hypervisor.Spec{}.Validate(hypervisor.NetworkUser)
	for _, want := range []string{"no name", "cpus 0", "memory 0", "no kernel and no disk", "guest port 0", "no network mode", "no service", "no spec hash"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(empty): want error containing %q, got %v", want, err)
		}
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"web-3f2a91c0-x1": true, "a": true, "A_1": true, strings.Repeat("a", 64): true,
		"": false, "-web": false, "_web": false, "web.1": false, "..": false, "a/b": false,
		strings.Repeat("a", 65): false, ".create-web-1-1": false,
	} {
		if got := hypervisor.ValidName(name); got != want {
			t.Errorf("ValidName(%q): want %v, got %v", name, want, got)
		}
	}
}

func TestCreatedAt(t *testing.T) {
	now := func() time.Time { return time.Date(2025, 11, 25, 21, 30, 15, 999, time.FixedZone("CET", 3600)) }
	tests := []struct {
		name    string
		created time.Time
		want    time.Time
	}{
		{"unset: now, in UTC, to the second", time.Time{}, time.Date(2025, 11, 25, 20, 30, 15, 0, time.UTC)},
		{"set: kept, rounded down", time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.UTC), time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	for _, tt := range tests {
		spec := hypervisor.Spec{Meta: hypervisor.Metadata{Created: tt.created}}
		if got := spec.CreatedAt(now); !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("%s: CreatedAt: want %v, got %v", tt.name, tt.want, got)
		}
	}
}

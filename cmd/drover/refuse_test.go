package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/testenv"
)

// TestCommitOverBudgetRefused: a commit asking for more VMs, memory or vCPUs than
// the host budget allows is refused by `run --once` with an error naming the limit,
// and nothing is created: no VM, no Consul instance.
func TestCommitOverBudgetRefused(t *testing.T) {
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	bin := buildCrashDrover(t)
	reg, err := discovery.New(discovery.Config{Address: consul.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		svc   testenv.Service
		flags []string
		want  string
	}{
		{"vms", testenv.Service{Replicas: 3}, []string{"--max-vms", "4"}, "--max-vms 4"}, // blue-green peaks at 2×3
		{"memory", testenv.Service{Replicas: 1, MemoryMiB: 256}, []string{"--max-memory", "300MiB"}, "--max-memory 300 MiB"},
		{"cpus", testenv.Service{Replicas: 2}, []string{"--max-cpus", "3"}, "--max-cpus 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			service := "budget-" + tt.name
			state := testenv.StateDir(t)
			t.Cleanup(func() { destroyService(t, "qemu", "", state, service) })
			repo := testenv.NewRepo(t)
			tt.svc.Name, tt.svc.Version = service, "1"
			repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(tt.svc)}, "over budget")
			args := append([]string{"run", "--once", "--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr,
				"--driver", "qemu", "--listen", "", "--interval", "1s"}, imageRootArgs(images)...)
			code, stderr := runBinary(t, bin, append(args, tt.flags...)...)
			if code != exitFail || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "refused") {
				t.Fatalf("run --once over budget: exit %d, want %d with an error naming %q\n%s", code, exitFail, tt.want, stderr)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			hv, err := newDriver(ctx, options{driver: "qemu", stateDir: state}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer hv.Close()
			if vms, err := hv.List(ctx); err != nil || len(vms) != 0 {
				t.Errorf("after a refused commit: VMs %v (err %v), want none", vms, err)
			}
			ins, err := reg.ServiceInstances(ctx, service)
			if err != nil || len(ins) != 0 {
				t.Errorf("after a refused commit: Consul instances of %s %v (err %v), want none", service, ins, err)
			}
		})
	}
}

// TestStateDirNotTraversable: libvirt's QEMU runs as its own user, and cannot open
// the images under a state dir it cannot traverse (mktemp -d and home directories are
// 0700). Drover says so at start-up, naming the directory and the fix, before it
// fetches anything, instead of failing every VM after fetching its images.
func TestStateDirNotTraversable(t *testing.T) {
	uri := testenv.Libvirt(t)
	consul := testenv.Consul(t)
	images := testenv.Images(t)
	bin := buildCrashDrover(t)
	repo := testenv.NewRepo(t)
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(testenv.Service{Name: "statedir", Version: "1", Replicas: 1})}, "v1")
	private, err := os.MkdirTemp("", "drover-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(private, "state")
	args := append([]string{"run", "--once", "--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr,
		"--driver", "libvirt", "--libvirt-uri", uri, "--listen", "", "--interval", "1s"}, imageRootArgs(images)...)
	code, stderr := runBinary(t, bin, args...)
	if code != exitFail {
		t.Fatalf("run --once with a 0700 state dir: exit %d, want %d\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{private, "chmod o+x"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("start-up error does not name %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "fetched") || strings.Contains(stderr, "cached image") {
		t.Errorf("drover fetched before reporting the state dir:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "git")); !os.IsNotExist(err) {
		t.Errorf("the git clone exists (%v): drover fetched before checking the state dir", err)
	}
}

// runBinary runs the drover binary to its end (at most 5 minutes) and returns its exit
// code and its stderr and stdout.
func runBinary(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("drover %s still running after 5m\n%s", strings.Join(args, " "), out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	case err != nil:
		t.Fatalf("drover %s: %v", strings.Join(args, " "), err)
	}
	return 0, string(out)
}

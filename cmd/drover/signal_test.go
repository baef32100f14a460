package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/testenv"
)

// TestSIGTERMMidRollout stops the real binary while it boots VMs: it must exit cleanly,
// every VM it made must be accounted for (registered in Consul, carrying metadata), and
// the next run must converge without leaking any.
func TestSIGTERMMidRollout(t *testing.T) {
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	repo := testenv.NewRepo(t)
	state := testenv.StateDir(t)
	const service = "e2e-sigterm"
	t.Cleanup(func() { destroyService(t, "qemu", "", state, service) })

	bin := filepath.Join(t.TempDir(), "drover")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build drover: %v\n%s", err, out)
	}
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(testenv.Service{Name: service, Version: "1", Replicas: 2})}, "v1")
	args := []string{"run", "--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr,
		"--driver", "qemu", "--listen", "", "--interval", "1s"}
	args = append(args, imageRootArgs(images)...)

	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for the first VM to exist, then stop Drover while the rollout waits on health.
	created := make(chan struct{})
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		once := false
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), `msg="created vm"`) {
				once = true
				close(created)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-created:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("no VM created within 2m\n%s", logs.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drover run after SIGTERM: %v, want a clean exit\n%s", err, logs.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("drover run did not exit within 1m of SIGTERM\n%s", logs.String())
	}

	// Every VM that exists is Drover's and registered: nothing half-made.
	ctx := context.Background()
	hv, err := newDriver(ctx, options{driver: "qemu", stateDir: state}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	reg, err := discovery.New(discovery.Config{Address: consul.Addr}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	vms, err := hv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	instances, err := reg.Instances(ctx, "drover")
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, in := range instances {
		registered[in.ID] = true
	}
	if len(vms) == 0 {
		t.Fatalf("no VM after SIGTERM, want the ones created before it\n%s", logs.String())
	}
	for _, vm := range vms {
		if !registered[vm.Name] {
			t.Errorf("VM %s exists but is not registered in Consul", vm.Name)
		}
	}

	// The next run continues from there and ends with exactly the replicas.
	if code, _, stderr := runCLI(t, append([]string{"run", "--once"}, args[1:]...)...); code != 0 {
		t.Fatalf("run --once after SIGTERM: exit %d\n%s", code, stderr)
	}
	vms, err = hv.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 2 {
		t.Errorf("after resuming: %d VMs, want 2", len(vms))
	}
	if n, err := reg.PassingCount(ctx, service); err != nil || n != 2 {
		t.Errorf("after resuming: %d passing (err %v), want 2", n, err)
	}
}

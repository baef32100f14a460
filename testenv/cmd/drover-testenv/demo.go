package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/drover-dev/drover/hypervisor/qemu"
	"github.com/drover-dev/drover/testenv"
)

func init() {
	commands["demo"] = command{
		summary: "run drover (direct QEMU driver) against a Consul agent and a demo fleet repository",
		run:     runDemo,
	}
}

// demoService is the demo's service name: distinct enough never to be a real one, since
// -clean destroys every Drover VM of that service on the host.
const demoService = "demo-web"

func runDemo(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: drover-testenv demo -drover PATH [-dir DIR] [-consul-port 18500] [-listen 127.0.0.1:7070]\n"+
			"       drover-testenv demo -clean [-dir DIR]\n\n"+
			"Builds the test images, starts a Consul dev agent, creates a fleet\n"+
			"repository in DIR/fleet (version 1 of %q, 2 replicas) unless it exists, and runs\n"+
			"`drover run` against it until interrupted. VMs keep running afterwards; -clean\n"+
			"destroys them and removes DIR.\n\n", demoService)
		fs.PrintDefaults()
	}
	drover := fs.String("drover", "bin/drover", "the drover binary to run")
	dir := fs.String("dir", ".cache/demo", "directory for the demo's repository and state")
	consulPort := fs.Int("consul-port", 18500, "Consul HTTP port on 127.0.0.1 (0 picks a free one)")
	listen := fs.String("listen", "127.0.0.1:7070", "drover's dashboard and API address")
	clean := fs.Bool("clean", false, "destroy the demo's VMs and remove its directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *clean {
		return cleanDemo(ctx, log, abs)
	}

	cache, err := testenv.CacheDir()
	if err != nil {
		return err
	}
	images, err := testenv.BuildImages(ctx, cache, log)
	if err != nil {
		return err
	}
	bin, err := testenv.ConsulBinary(ctx, cache, log)
	if err != nil {
		return err
	}
	agent, err := testenv.StartConsul(ctx, bin, testenv.ConsulOptions{Dir: filepath.Join(abs, "consul"), HTTPPort: *consulPort}, log)
	if err != nil {
		return err
	}
	defer agent.Stop()

	repoDir := filepath.Join(abs, "fleet")
	if _, err := os.Stat(filepath.Join(repoDir, ".git")); errors.Is(err, os.ErrNotExist) {
		repo, err := testenv.InitRepo(repoDir)
		if err != nil {
			return err
		}
		fleet := images.FleetYAML(testenv.Service{Name: demoService, Version: "1.0.0", Replicas: 2, Drain: 2 * time.Second})
		if _, err := repo.CommitFiles(map[string]string{"fleet.yaml": fleet}, "demo-web 1.0.0"); err != nil {
			return err
		}
	}

	fmt.Printf(`
Drover demo
  fleet repository  %[1]s  (branch main, fleet.yaml)
  Consul UI         http://%[2]s/ui/dc1/services/%[3]s
  dashboard         http://%[4]s/          (live; /metrics for Prometheus)

Drover now boots %[3]s version 1.0.0 (2 VMs). In another terminal, watch it:
  bin/drover status --server http://%[4]s        (or: bin/drover history --watch --server http://%[4]s)
  watch -n1 "curl -s 'http://%[2]s/v1/health/service/%[3]s?passing' | grep -o '\"version\": *\"[^\"]*\"'"

Then commit version 2.0.0 and watch it roll out (blue-green, gated on /healthz):
  cd %[1]s && sed -i 's/1\.0\.0/2.0.0/g' fleet.yaml && git -c user.name=demo -c user.email=demo@localhost commit -qam "%[3]s 2.0.0"

Roll back with git revert:
  cd %[1]s && git -c user.name=demo -c user.email=demo@localhost revert --no-edit HEAD

Ctrl-C stops drover and Consul; the VMs keep running. 'make demo-clean' destroys them.

`, repoDir, agent.Addr, demoService, *listen)

	droverArgs := []string{"run",
		"--repo", repoDir, "--interval", "5s", "--driver", "qemu",
		"--state-dir", filepath.Join(abs, "state"),
		"--consul", agent.Addr, "--listen", *listen}
	// Drover reads file:// images only from the directories it is given.
	for _, dir := range imageDirs(images) {
		droverArgs = append(droverArgs, "--image-root", dir)
	}
	cmd := exec.CommandContext(ctx, *drover, droverArgs...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// The demo uses the direct QEMU driver: it needs no libvirtd.
	// Drover stops cleanly between steps on SIGTERM; a kill would be the last resort.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("drover run: %w", err)
	}
	return nil
}

// imageDirs are the directories holding the test images, each once.
func imageDirs(images testenv.GuestImages) []string {
	var dirs []string
	for _, f := range []testenv.File{images.Kernel, images.Initrd, images.UnhealthyInitrd} {
		if dir := filepath.Dir(f.Path); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}

func cleanDemo(ctx context.Context, log *slog.Logger, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "state")); errors.Is(err, os.ErrNotExist) {
		return nil // nothing was ever started
	}
	hv, err := qemu.New(ctx, qemu.Config{StateDir: filepath.Join(dir, "state")}, log)
	if err != nil {
		return err
	}
	defer hv.Close()
	vms, err := hv.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, vm := range vms {
		if vm.Meta.Service != demoService {
			continue
		}
		if err := hv.Destroy(ctx, vm.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Println("destroyed", vm.Name)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if !strings.HasSuffix(dir, "demo") {
		return fmt.Errorf("refusing to remove %s: not a demo directory", dir)
	}
	return os.RemoveAll(dir)
}

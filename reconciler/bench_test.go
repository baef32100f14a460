package reconciler_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/testenv"
)

// BenchmarkDeployVsDirect compares `drover run --once` deploying 2 VMs on an empty host
// with starting the same 2 guests directly with `virsh create` and polling /healthz.
// Target: drover within 20% of direct (metric drover/direct).
func BenchmarkDeployVsDirect(b *testing.B) {
	w := newWorld(b, "libvirt")
	const svc = "e2e-bench"
	web := testenv.Service{Name: svc, Version: "1", Replicas: 2}
	src := w.source(w.repo.URL())

	// The domain XML Drover would use, for virsh to boot directly.
	xmls := directDomains(b, w, web, 2)

	var direct, drover time.Duration
	for range b.N {
		start := time.Now()
		var wg sync.WaitGroup
		for _, d := range xmls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := exec.Command("virsh", "-c", "qemu:///system", "create", d.file).CombinedOutput(); err != nil {
					b.Errorf("virsh create: %v: %s", err, out)
					return
				}
				waitHealthy(b, d.port, 2*time.Minute)
			}()
		}
		wg.Wait()
		direct += time.Since(start)
		for _, d := range xmls {
			exec.Command("virsh", "-c", "qemu:///system", "destroy", d.name).Run()
		}

		w.commit(w.images.FleetYAML(web))
		start = time.Now()
		if err := w.converge(src); err != nil {
			b.Fatalf("drover: %v", err)
		}
		drover += time.Since(start)
		web.Replicas = 0
		w.commit(w.images.FleetYAML(web))
		if err := w.converge(src); err != nil {
			b.Fatalf("drover scale to 0: %v", err)
		}
		web.Replicas = 2
	}
	b.ReportMetric(float64(direct.Milliseconds())/float64(b.N), "direct-ms/op")
	b.ReportMetric(float64(drover.Milliseconds())/float64(b.N), "drover-ms/op")
	b.ReportMetric(float64(drover)/float64(direct), "drover/direct")
}

// BenchmarkNoopPass measures a pass over a fleet that already matches (no git fetch).
// Target: under 50 ms.
func BenchmarkNoopPass(b *testing.B) {
	w := newWorld(b, "libvirt")
	web := testenv.Service{Name: "e2e-noop", Version: "1", Replicas: 2}
	fleet := w.images.FleetYAML(web)
	rev := w.commit(fleet)
	if err := w.converge(w.source(w.repo.URL())); err != nil {
		b.Fatal(err)
	}
	f, err := sources.Parse("fleet.yaml", []byte(fleet))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		res, err := w.rec.Pass(ctx, sources.Revision{Commit: rev, Fleet: f})
		if err != nil || res.Changed || res.Err != nil {
			b.Fatalf("pass: changed=%v err=%v %v", res.Changed, err, res.Err)
		}
	}
}

type directDomain struct {
	name, file string
	port       int
}

// directDomains turns the domain XML of a Drover-made VM into n plain domains (no
// metadata, own names and ports), so virsh boots exactly the same guest.
func directDomains(b *testing.B, w *world, web testenv.Service, n int) []directDomain {
	b.Helper()
	w.commit(w.images.FleetYAML(testenv.Service{Name: web.Name, Version: web.Version, Replicas: 1}))
	if err := w.converge(w.source(w.repo.URL())); err != nil {
		b.Fatal(err)
	}
	vms := w.vms(web.Name)
	if len(vms) != 1 {
		b.Fatalf("want 1 VM, got %d", len(vms))
	}
	out, err := exec.Command("virsh", "-c", "qemu:///system", "dumpxml", vms[0].Name).Output()
	if err != nil {
		b.Fatalf("dumpxml: %v", err)
	}
	w.commit(w.images.FleetYAML(testenv.Service{Name: web.Name, Version: web.Version, Replicas: 0}))
	if err := w.converge(w.source(w.repo.URL())); err != nil {
		b.Fatal(err)
	}
	var doms []directDomain
	for i := range n {
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(string(out)); err != nil {
			b.Fatal(err)
		}
		port, err := hypervisor.FreeLocalPort()
		if err != nil {
			b.Fatal(err)
		}
		dom.Name = fmt.Sprintf("bench-direct-%d", i)
		dom.UUID = ""
		dom.Metadata = nil
		for _, dev := range dom.Devices.Serials {
			if dev.Source != nil && dev.Source.File != nil {
				dev.Source.File.Path = filepath.Join(b.TempDir(), "console.log")
			}
		}
		if dom.QEMUCommandline != nil {
			for j, arg := range dom.QEMUCommandline.Args {
				if strings.Contains(arg.Value, "hostfwd=") {
					dom.QEMUCommandline.Args[j].Value = fmt.Sprintf("user,id=drover0,hostfwd=tcp:127.0.0.1:%d-:%d", port, testenv.GuestPort)
				}
			}
		}
		data, err := dom.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		file := filepath.Join(b.TempDir(), dom.Name+".xml")
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			b.Fatal(err)
		}
		doms = append(doms, directDomain{name: dom.Name, file: file, port: port})
		b.Cleanup(func() { exec.Command("virsh", "-c", "qemu:///system", "destroy", dom.Name).Run() })
	}
	return doms
}

func waitHealthy(b *testing.B, port int, timeout time.Duration) {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Errorf("guest on port %d not healthy within %s", port, timeout)
}

// BenchmarkReplaceKilledVM measures the time from a VM killed out of band (its QEMU
// process SIGKILLed) to its replacement passing, with `drover run` waking on Consul
// health changes, next to the time a scale-up takes to boot one fresh VM to passing.
func BenchmarkReplaceKilledVM(b *testing.B) {
	w := newWorld(b, "qemu")
	web := testenv.Service{Name: "e2e-kill", Version: "1", Replicas: 2}
	src := w.source(w.repo.URL())
	w.commit(w.images.FleetYAML(web))
	if err := w.converge(src); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{}, 1)
	go w.reg.WatchHealth(ctx, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	runner := &reconciler.Runner{Source: src, Reconciler: w.rec, Interval: time.Minute, Log: w.log, Wake: wake}
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()

	waitFor := func(cond func() bool) {
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("condition not met within 2m; VMs %v", w.vmNames(web.Name))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	passing := func() int {
		n, _ := w.reg.PassingCount(context.Background(), web.Name)
		return n
	}
	var replace time.Duration
	for range b.N {
		waitFor(func() bool { return passing() == 2 && len(w.vmNames(web.Name)) == 2 })
		victim := w.vmNames(web.Name)[0]
		pids := hypervisortest.QEMUProcesses(victim)
		if len(pids) != 1 {
			b.Fatalf("qemu processes of %s: %v", victim, pids)
		}
		start := time.Now()
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		waitFor(func() bool {
			names := w.vmNames(web.Name)
			return !slices.Contains(names, victim) && len(names) == 2 && passing() == 2
		})
		replace += time.Since(start)
	}
	cancel()
	<-done

	// Reference: one fresh VM from create to passing (a scale-up, --once).
	web.Replicas = 3
	w.commit(w.images.FleetYAML(web))
	start := time.Now()
	if err := w.converge(src); err != nil {
		b.Fatal(err)
	}
	fresh := time.Since(start)
	b.ReportMetric(float64(replace.Milliseconds())/float64(b.N), "kill-to-passing-ms/op")
	b.ReportMetric(float64(fresh.Milliseconds()), "fresh-boot-ms")
}

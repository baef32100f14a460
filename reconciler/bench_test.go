package reconciler_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
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

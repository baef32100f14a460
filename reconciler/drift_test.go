package reconciler_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/testenv"
)

func virsh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", testenv.LibvirtURI}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// convergeTo runs passes until the service has exactly n passing VMs, none of them
// in names (the VMs that had to go), and returns the service's VM names.
func (w *world) repaired(t *testing.T, service string, gone []string, n int) []string {
	t.Helper()
	if err := w.converge(w.source(w.repo.URL())); err != nil {
		t.Fatalf("converge: %v", err)
	}
	got := w.vmNames(service)
	for _, g := range gone {
		if slices.Contains(got, g) {
			t.Fatalf("VM %s still there after repair: %v", g, got)
		}
	}
	w.expectServing(service, "1", "", n)
	return got
}

// TestE2EDriftRepair pokes managed VMs by hand, the way an operator might, and checks
// every pass puts the fleet back as the commit says; a domain without Drover's
// metadata is never touched.
func TestE2EDriftRepair(t *testing.T) {
	w := newWorld(t, "libvirt")
	const svc = "e2e-drift"
	w.commit(w.images.FleetYAML(testenv.Service{Name: svc, Version: "1", Replicas: 2, Drain: 200 * time.Millisecond}))
	if err := w.converge(w.source(w.repo.URL())); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	names := w.vmNames(svc)

	// A domain that is not Drover's: same kind of guest, no metadata. Never touched.
	foreign := "e2e-foreign-" + fmt.Sprint(time.Now().UnixNano()%100000)
	xmlOf := func(name string) *libvirtxml.Domain {
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(virsh(t, "dumpxml", "--inactive", name)); err != nil {
			t.Fatal(err)
		}
		return &dom
	}
	dom := xmlOf(names[0])
	dom.Name, dom.UUID, dom.Metadata, dom.QEMUCommandline, dom.Devices.Serials, dom.Devices.Consoles = foreign, "", nil, nil, nil, nil
	defineXML(t, dom)
	t.Cleanup(func() { exec.Command("virsh", "-c", testenv.LibvirtURI, "undefine", foreign).Run() })

	t.Run("stopped out of band", func(t *testing.T) {
		virsh(t, "destroy", names[0])
		names = w.repaired(t, svc, names[:1], 2)
	})
	t.Run("destroyed and undefined out of band", func(t *testing.T) {
		virsh(t, "destroy", names[0])
		virsh(t, "undefine", names[0])
		names = w.repaired(t, svc, names[:1], 2)
	})
	t.Run("definition edited is replaced", func(t *testing.T) {
		edited := xmlOf(names[0])
		edited.Memory.Value *= 2
		edited.Memory.Unit = ""
		if edited.CurrentMemory != nil {
			edited.CurrentMemory.Value, edited.CurrentMemory.Unit = edited.Memory.Value, ""
		}
		defineXML(t, edited)
		names = w.repaired(t, svc, names[:1], 2)
	})
	t.Run("hand-made clone is retired", func(t *testing.T) {
		clone := xmlOf(names[0])
		port, err := hypervisor.FreeLocalPort()
		if err != nil {
			t.Fatal(err)
		}
		clone.Name, clone.UUID = names[0][:len(names[0])-5]+"clone", ""
		for i, arg := range clone.QEMUCommandline.Args {
			clone.QEMUCommandline.Args[i].Value = regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:\d+-`).ReplaceAllString(arg.Value, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-", port))
		}
		for i, serial := range clone.Devices.Serials {
			clone.Devices.Serials[i].Log = nil
			if serial.Source != nil && serial.Source.File != nil {
				serial.Source.File.Path = t.TempDir() + "/clone.console.log"
			}
		}
		clone.Devices.Consoles = nil
		defineXML(t, clone)
		virsh(t, "start", clone.Name)
		t.Cleanup(func() {
			exec.Command("virsh", "-c", testenv.LibvirtURI, "destroy", clone.Name).Run()
			exec.Command("virsh", "-c", testenv.LibvirtURI, "undefine", clone.Name).Run()
		})
		if got := w.vmNames(svc); len(got) != 3 {
			t.Fatalf("clone not seen as Drover's: %v", got)
		}
		after := w.repaired(t, svc, nil, 2)
		if !slices.Equal(after, names) && slices.Contains(after, clone.Name) {
			t.Fatalf("after retiring the clone: %v", after)
		}
		names = after
	})
	t.Run("failing its check too long is replaced", func(t *testing.T) {
		// The guest's NIC goes down: it keeps running but stops answering.
		virsh(t, "qemu-monitor-command", "--hmp", names[1], "set_link drover0 off")
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		for {
			if n, _ := w.reg.PassingCount(ctx, svc); n < 2 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal("the VM with its link down never stopped passing")
			case <-time.After(200 * time.Millisecond):
			}
		}
		// One pass sees it failing; the next, past the threshold, replaces it.
		deadline := time.Now().Add(2 * time.Minute)
		for slices.Contains(w.vmNames(svc), names[1]) {
			if time.Now().After(deadline) {
				t.Fatalf("VM failing its check was not replaced: %v", w.vmNames(svc))
			}
			// Passes report the failing VM until it is replaced; that is expected here.
			if err := w.converge(w.source(w.repo.URL())); err != nil {
				t.Logf("converge while the VM fails: %v", err)
			}
			time.Sleep(250 * time.Millisecond) // poll interval of this deadline-bounded loop
		}
		names = w.repaired(t, svc, names[1:2], 2)
	})

	if _, err := exec.Command("virsh", "-c", testenv.LibvirtURI, "dominfo", foreign).CombinedOutput(); err != nil {
		t.Errorf("the domain without Drover's metadata was touched: %v", err)
	}
}

func defineXML(t *testing.T, dom *libvirtxml.Domain) {
	t.Helper()
	data, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	f := t.TempDir() + "/dom.xml"
	if err := writeFile(f, data); err != nil {
		t.Fatal(err)
	}
	virsh(t, "define", f)
}

func writeFile(path, data string) error {
	return os.WriteFile(path, []byte(data), 0o644)
}

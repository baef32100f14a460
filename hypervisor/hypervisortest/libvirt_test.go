package hypervisortest_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	golibvirt "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/testenv"
)

// reachableTempDir is a t.TempDir that libvirt's QEMU, running as its own user, can
// traverse.
func reachableTempDir(t testing.TB) string {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// libvirtEnv makes a libvirt driver on uri with the hooks the suite needs. kill is how
// a VM dies out of band on this uri.
func libvirtEnv(t *testing.T, uri string, kill func(t *testing.T, conn *golibvirt.Connect, name string)) hypervisortest.Env {
	stateDir := reachableTempDir(t)
	d, err := libvirt.New(t.Context(), libvirt.Config{URI: uri, StateDir: stateDir}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatalf("libvirt.New(%s): %v", uri, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	// A connection of the test's own, to look behind the driver's back. On
	// test:///default it shares the driver's in-process state.
	conn, err := golibvirt.NewConnect(uri)
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	t.Cleanup(func() { conn.Close() })
	return hypervisortest.Env{
		Driver: d,
		Traces: func(name string) []string {
			var out []string
			if dom, err := conn.LookupDomainByName(name); err == nil {
				dom.Free()
				out = append(out, "domain "+name)
			}
			files, _ := filepath.Glob(filepath.Join(stateDir, "libvirt", name+".*"))
			out = append(out, files...)
			for _, pid := range hypervisortest.QEMUProcesses(name) {
				out = append(out, "qemu process "+strconv.Itoa(pid))
			}
			return out
		},
		MakeForeign: func(t *testing.T, name string) {
			x, err := (&libvirtxml.Domain{
				Type: "qemu", Name: name,
				Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
				OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"}},
			}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			dom, err := conn.DomainDefineXML(x)
			if err != nil {
				t.Fatalf("define foreign domain %s: %v", name, err)
			}
			dom.Free()
			t.Cleanup(func() {
				if dom, err := conn.LookupDomainByName(name); err == nil {
					dom.Undefine()
					dom.Free()
				}
			})
		},
		KillOutOfBand: func(t *testing.T, name string) { kill(t, conn, name) },
		EditOutOfBand: func(t *testing.T, name string) { doubleMemory(t, conn, name) },
		Disks:         func(t *testing.T, name string) []hypervisortest.AttachedDisk { return domainDisks(t, conn, name) },
	}
}

// domainDisks are the file disks of a domain's live definition.
func domainDisks(t *testing.T, conn *golibvirt.Connect, name string) []hypervisortest.AttachedDisk {
	t.Helper()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatalf("definition of %s: %v", name, err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		t.Fatalf("parse definition of %s: %v", name, err)
	}
	var out []hypervisortest.AttachedDisk
	for _, d := range def.Devices.Disks {
		if d.Source != nil && d.Source.File != nil {
			out = append(out, hypervisortest.AttachedDisk{File: d.Source.File.File, ReadOnly: d.ReadOnly != nil})
		}
	}
	return out
}

// blankDisk is a sparse raw disk that boots nothing, for a driver that runs no guest.
func blankDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "blank.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 64<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

// doubleMemory is `virsh setmaxmem --config`: the persistent definition gets twice the
// memory, everything else (Drover's metadata included) kept.
func doubleMemory(t *testing.T, conn *golibvirt.Connect, name string) {
	t.Helper()
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(golibvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		t.Fatalf("definition of %s: %v", name, err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		t.Fatalf("parse definition of %s: %v", name, err)
	}
	if def.Memory == nil {
		t.Fatalf("definition of %s has no memory", name)
	}
	def.Memory.Value *= 2
	def.CurrentMemory = nil
	if x, err = def.Marshal(); err != nil {
		t.Fatal(err)
	}
	nd, err := conn.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("redefine %s with more memory: %v", name, err)
	}
	nd.Free()
}

// TestConformanceLibvirtTestDriver runs the parts that need no guest against libvirt's
// in-process test driver: fast, and no libvirtd needed.
func TestConformanceLibvirtTestDriver(t *testing.T) {
	dir := t.TempDir()
	hypervisortest.Conformance(t, hypervisortest.Harness{
		New: func(t *testing.T) hypervisortest.Env {
			return libvirtEnv(t, "test:///default", func(t *testing.T, conn *golibvirt.Connect, name string) {
				// The test driver's hard stop, through another connection.
				dom, err := conn.LookupDomainByName(name)
				if err != nil {
					t.Fatalf("look up %s: %v", name, err)
				}
				defer dom.Free()
				if err := dom.Destroy(); err != nil {
					t.Fatalf("destroy %s out of band: %v", name, err)
				}
			})
		},
		Images: hypervisortest.Images{
			Kernel: hypervisortest.Touch(t, dir, "vmlinuz"), Initrd: hypervisortest.Touch(t, dir, "initrd.cpio.gz"),
			Cmdline: testenv.GuestCmdline, GuestPort: testenv.GuestPort, Reach: testenv.GuestReach,
			Disk: blankDisk(t, dir),
		},
		RunsGuests:  false,
		Unavailable: testenv.Unavailable,
	})
}

// TestConformanceLibvirtQEMU runs the whole suite against a real libvirtd.
func TestConformanceLibvirtQEMU(t *testing.T) {
	uri := testenv.Libvirt(t)
	imgs := testenv.Images(t)
	hypervisortest.Conformance(t, hypervisortest.Harness{
		New: func(t *testing.T) hypervisortest.Env {
			return libvirtEnv(t, uri, func(t *testing.T, _ *golibvirt.Connect, name string) {
				hypervisortest.KillQEMU(t, name)
			})
		},
		Images: hypervisortest.Images{
			Kernel: imgs.Kernel.Path, Initrd: imgs.Initrd.Path,
			Cmdline: testenv.GuestCmdline, GuestPort: testenv.GuestPort, Reach: testenv.GuestReach,
			Disk: testenv.TinyDisk(t, imgs).Path,
		},
		RunsGuests:  true,
		Unavailable: testenv.Unavailable,
	})
}

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

// The real tests boot guests under libvirtd's QEMU (qemu:///system) from the test golden
// images. They run one after another and hold at most two small guests at once.

// realDriver connects to qemu:///system with a state directory QEMU can reach.
func realDriver(t *testing.T) *Driver {
	t.Helper()
	uri := testenv.Libvirt(t)
	d, err := New(t.Context(), Config{URI: uri, StateDir: reachableTempDir(t)}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatalf("New(%s): %v", uri, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Logf("virt type: %s", d.virtType)
	return d
}

// reachableTempDir is a temporary directory that QEMU, running as libvirt-qemu, can
// traverse: the testing package makes them owner-only.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// guestSpec is a spec booting the healthy test guest reporting version.
func guestSpec(imgs testenv.GuestImages, name, version string) hypervisor.Spec {
	return hypervisor.Spec{
		Name:      name,
		CPUs:      1,
		MemoryMiB: 192,
		Kernel:    imgs.Kernel.Path,
		Initrd:    imgs.Initrd.Path,
		Cmdline:   testenv.GuestCmdline(version),
		Network:   hypervisor.Network{Mode: hypervisor.NetworkUser},
		GuestPort: testenv.GuestPort,
		Meta: hypervisor.Metadata{
			Service:  "web",
			SpecHash: "5eed" + version,
			Revision: "c0ffee",
			Version:  version,
			Created:  time.Now().UTC().Truncate(time.Second),
		},
	}
}

// waitHealthy polls the guest's /healthz until it answers with version.
func waitHealthy(t *testing.T, d *Driver, vm hypervisor.VM, version string) {
	t.Helper()
	url := "http://" + net.JoinHostPort(vm.Address, strconv.Itoa(vm.Port)) + "/healthz"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == version {
				return
			}
			last = fmt.Sprintf("status %d body %q", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", vm.Name, t.Context().Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	console, _ := os.ReadFile(filepath.Join(d.dir, consoleLogName(vm.Name)))
	t.Fatalf("%s: GET %s: want %q within 90s, last got %s\nconsole:\n%s", vm.Name, url, version, last, console)
}

func TestRealTwoGuestsInParallel(t *testing.T) {
	d := realDriver(t)
	imgs := testenv.Images(t)
	ctx := t.Context()

	specs := []hypervisor.Spec{
		guestSpec(imgs, "real-par-a", "1.0.0"),
		guestSpec(imgs, "real-par-b", "2.0.0"),
	}
	vms := make([]hypervisor.VM, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		hypervisortest.DestroyAtEnd(t, d, spec.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			vms[i], errs[i] = d.Create(ctx, spec)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if vms[0].Port == vms[1].Port {
		t.Fatalf("two guests share host port %d", vms[0].Port)
	}
	for i, vm := range vms {
		waitHealthy(t, d, vm, specs[i].Meta.Version)
	}

	listed, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for i, want := range vms {
		got, ok := findVM(listed, want.Name)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("List entry %s:\nwant %+v\ngot  %+v (found %v)", want.Name, want, got, ok)
		}
		if got.Meta != specs[i].Meta {
			t.Errorf("List metadata of %s:\nwant %+v\ngot  %+v", want.Name, specs[i].Meta, got.Meta)
		}
	}

	// The test guest powers off on the ACPI button, so this is the graceful path.
	start := time.Now()
	if err := d.Shutdown(ctx, vms[0].Name, 60*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Shutdown of a guest that honours ACPI took %v", took)
	}
	got, err := d.Get(ctx, vms[0].Name)
	if err != nil || got.State != hypervisor.StateShutoff {
		t.Fatalf("Get after Shutdown: want defined and shutoff, got %+v, %v", got, err)
	}

	for _, vm := range vms {
		log := filepath.Join(d.dir, consoleLogName(vm.Name))
		if _, err := os.Stat(log); err != nil {
			t.Errorf("console log of %s before Destroy: %v", vm.Name, err)
		}
		if err := d.Destroy(ctx, vm.Name); err != nil {
			t.Fatalf("Destroy %s: %v", vm.Name, err)
		}
		if _, err := d.Get(ctx, vm.Name); !errors.Is(err, hypervisor.ErrNotFound) {
			t.Errorf("Get %s after Destroy: want ErrNotFound, got %v", vm.Name, err)
		}
		if _, err := os.Stat(log); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("console log of %s after Destroy: want gone, got %v", vm.Name, err)
		}
	}
}

func TestRealShutdownForcesGuestIgnoringACPI(t *testing.T) {
	d := realDriver(t)
	imgs := testenv.Images(t)
	ctx := t.Context()
	spec := guestSpec(imgs, "real-deaf", "1.0.0")
	// Without an initrd the kernel panics looking for a root file system and
	// then ignores everything, the power button included.
	spec.Initrd, spec.Cmdline = "", "console=ttyS0 panic=0"
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}

	const timeout = 2 * time.Second
	start := time.Now()
	if err := d.Shutdown(ctx, spec.Name, timeout); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	took := time.Since(start)
	if took < timeout || took > timeout+15*time.Second {
		t.Errorf("Shutdown(timeout %v) of a guest ignoring ACPI: want forced off just after the timeout, took %v", timeout, took)
	}
	vm, err := d.Get(ctx, spec.Name)
	if err != nil || vm.State != hypervisor.StateShutoff {
		t.Fatalf("Get after forced Shutdown: want defined and shutoff, got %+v, %v", vm, err)
	}
}

func TestRealKernelAndDisk(t *testing.T) {
	d := realDriver(t)
	imgs := testenv.Images(t)
	ctx := t.Context()
	golden := filepath.Join(reachableTempDir(t), "golden.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", golden, "32M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	if err := os.Chmod(golden, 0o644); err != nil {
		t.Fatal(err)
	}
	goldenSum := hypervisortest.SHA256File(t, golden)

	spec := guestSpec(imgs, "real-disk", "3.0.0")
	spec.Disk = golden
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	vm, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	waitHealthy(t, d, vm, "3.0.0")

	overlay := filepath.Join(d.dir, overlayName(spec.Name))
	// What the guest wrote is not for every local user to read.
	if fi, err := os.Stat(overlay); err != nil || fi.Mode().Perm()&0o007 != 0 {
		t.Errorf("overlay: want no access for others, got %v, %v", fi.Mode(), err)
	}
	format, backing, backingFmt := imageInfoOf(t, overlay)
	if format != "qcow2" || backing != golden || backingFmt != "qcow2" {
		t.Errorf("overlay: want qcow2 backed by %s (qcow2), got %s backed by %q (%q)", golden, format, backing, backingFmt)
	}
	if err := d.Destroy(ctx, spec.Name); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(overlay); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("overlay after Destroy: want gone, got %v", err)
	}
	if got := hypervisortest.SHA256File(t, golden); got != goldenSum {
		t.Errorf("golden image changed: sha256 %s before, %s after", goldenSum, got)
	}
}

func TestRealTakenPortIsRetried(t *testing.T) {
	d := realDriver(t)
	imgs := testenv.Images(t)
	ctx := t.Context()

	// Someone binds the port between our pick and QEMU's start.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	var picks int
	d.pickPort = func() (int, error) {
		picks++
		if picks == 1 {
			return takenPort, nil
		}
		return hypervisor.FreeLocalPort()
	}

	spec := guestSpec(imgs, "real-port", "4.0.0")
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	vm, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create with the first port taken: %v", err)
	}
	if vm.Port == takenPort || picks != 2 {
		t.Fatalf("Create: want a second port after %d was taken, got port %d after %d picks", takenPort, vm.Port, picks)
	}
	waitHealthy(t, d, vm, "4.0.0")
}

func TestRealStartFailureCleansUp(t *testing.T) {
	d := realDriver(t)
	dir := reachableTempDir(t)
	// Not a kernel: QEMU refuses to start, after the domain and overlay exist.
	kernel := filepath.Join(dir, "not-a-kernel")
	if err := os.WriteFile(kernel, []byte(strings.Repeat("junk", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join(dir, "golden.raw")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", golden, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	os.Chmod(golden, 0o644)
	spec := hypervisor.Spec{
		Name: "real-bad-kernel", CPUs: 1, MemoryMiB: 128, Kernel: kernel, Disk: golden,
		Network: hypervisor.Network{Mode: hypervisor.NetworkUser}, GuestPort: 8080,
		Meta: hypervisor.Metadata{Service: "web", SpecHash: "bad"},
	}
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	_, err := d.Create(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), spec.Name) || !strings.Contains(err.Error(), "start domain") {
		t.Fatalf("Create with a bogus kernel: want a start error naming the vm, got %v", err)
	}
	assertNothingLeft(t, d, spec.Name)
}

// A state directory libvirt's QEMU cannot traverse is refused at start, naming the
// directory and the fix, before any image is fetched or VM made.
func TestRealStateDirNotTraversable(t *testing.T) {
	uri := testenv.Libvirt(t)
	parent := t.TempDir() // 0700, as mktemp -d makes it
	if err := os.Chmod(filepath.Dir(parent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(parent, "state")
	_, err := New(t.Context(), Config{URI: uri, StateDir: stateDir}, hypervisortest.Logger(t))
	if !errors.Is(err, hypervisor.ErrNotTraversable) {
		t.Fatalf("New with state dir under a 0700 directory: want ErrNotTraversable, got %v", err)
	}
	for _, want := range []string{"cannot traverse " + parent + ",", "chmod o+x " + parent} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New: want the error to contain %q, got %v", want, err)
		}
	}
}

// Validated defines in parallel all succeed (libvirt 9.0 can fail concurrent ones
// while loading its schema).
func TestRealParallelDefines(t *testing.T) {
	d := realDriver(t)
	ctx := t.Context()
	conn, err := d.connection(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		spec := hypervisortest.ValidSpec(t, fmt.Sprintf("real-def-%d", i))
		p := driftParams(spec)
		x, err := domainXML(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if dom, err := conn.LookupDomainByName(spec.Name); err == nil {
				undefine(dom)
				dom.Free()
			}
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			dom, err := d.define(ctx, conn, x)
			if err == nil {
				dom.Free()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("parallel defines: %v", err)
	}
}

package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

// The fast tests run against libvirt's in-process test driver: it keeps domains in
// memory and runs no guests, and test:///default ships one domain, "test", that is not
// Drover's. Its state is shared by every connection in the process, so each test uses
// its own VM names.
const testURI = "test:///default"

func newTestDriver(t testing.TB) *Driver {
	t.Helper()
	d, err := New(context.Background(), Config{URI: testURI, StateDir: t.TempDir()}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatalf("New(%s): %v", testURI, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func findVM(vms []hypervisor.VM, name string) (hypervisor.VM, bool) {
	for _, vm := range vms {
		if vm.Name == name {
			return vm, true
		}
	}
	return hypervisor.VM{}, false
}

func TestNewBadURI(t *testing.T) {
	_, err := New(t.Context(), Config{URI: "bogus:///nowhere", StateDir: t.TempDir()}, hypervisortest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "bogus:///nowhere") {
		t.Fatalf("New(bogus uri): want an error naming the uri, got %v", err)
	}
	_, err = New(t.Context(), Config{URI: testURI}, hypervisortest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "state directory") {
		t.Fatalf("New(no state dir): want an error about the state directory, got %v", err)
	}
}

func TestNewUsesTCGOutsideQEMU(t *testing.T) {
	d := newTestDriver(t)
	if d.virtType != virtTCG {
		t.Fatalf("virt type on %s: want %q, got %q", testURI, virtTCG, d.virtType)
	}
}

func TestCreateListGetRoundTrip(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	spec := hypervisortest.ValidSpec(t, "rt-web-1")
	spec.Meta.Created = time.Date(2025, 11, 25, 20, 1, 2, 345, time.FixedZone("CET", 3600))
	hypervisortest.DestroyAtEnd(t, d, spec.Name)

	vm, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	wantMeta := spec.Meta
	wantMeta.Created = time.Date(2025, 11, 25, 19, 1, 2, 0, time.UTC)
	if vm.Meta != wantMeta {
		t.Errorf("Create meta:\nwant %+v\ngot  %+v", wantMeta, vm.Meta)
	}
	if vm.State != hypervisor.StateRunning || vm.Address != "127.0.0.1" || vm.Port < 1 {
		t.Errorf("Create: want running on 127.0.0.1:<port>, got %+v", vm)
	}

	got, err := d.Get(ctx, spec.Name)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !reflect.DeepEqual(got, vm) {
		t.Errorf("Get:\nwant %+v\ngot  %+v", vm, got)
	}

	vms, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	listed, ok := findVM(vms, spec.Name)
	if !ok || !reflect.DeepEqual(listed, vm) {
		t.Errorf("List entry for %s:\nwant %+v\ngot  %+v (found %v)", spec.Name, vm, listed, ok)
	}
	if _, ok := findVM(vms, "test"); ok {
		t.Errorf("List: want the test driver's own domain %q skipped, got it in %+v", "test", vms)
	}
}

func TestCreateSameNameTwice(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	golden := hypervisortest.MakeGolden(t, "qcow2")
	spec := hypervisortest.ValidSpec(t, "twice-1")
	spec.Disk = golden
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err := d.Create(ctx, spec)
	if !errors.Is(err, errExists) || !strings.Contains(err.Error(), spec.Name) {
		t.Fatalf("second Create: want errExists naming the vm, got %v", err)
	}
	// The failed Create must not have cleaned up the first one's files.
	if _, err := os.Stat(filepath.Join(d.dir, overlayName(spec.Name))); err != nil {
		t.Fatalf("overlay of the existing vm after a refused Create: %v", err)
	}
	if _, err := d.Get(ctx, spec.Name); err != nil {
		t.Fatalf("Get existing vm after a refused Create: %v", err)
	}
}

func TestNotManagedAndNotFound(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	tests := []struct {
		op   string
		name string
		call func(string) error
		want error
	}{
		{"Get", "test", func(n string) error { _, err := d.Get(ctx, n); return err }, hypervisor.ErrNotManaged},
		{"Destroy", "test", func(n string) error { return d.Destroy(ctx, n) }, hypervisor.ErrNotManaged},
		{"Shutdown", "test", func(n string) error { return d.Shutdown(ctx, n, time.Second) }, hypervisor.ErrNotManaged},
		{"Get", "no-such-vm", func(n string) error { _, err := d.Get(ctx, n); return err }, hypervisor.ErrNotFound},
		{"Destroy", "no-such-vm", func(n string) error { return d.Destroy(ctx, n) }, hypervisor.ErrNotFound},
		{"Shutdown", "no-such-vm", func(n string) error { return d.Shutdown(ctx, n, time.Second) }, hypervisor.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.op+" "+tt.name, func(t *testing.T) {
			err := tt.call(tt.name)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.name) {
				t.Fatalf("%s(%s): want %v naming the vm, got %v", tt.op, tt.name, tt.want, err)
			}
		})
	}
	// Refused means untouched: the foreign domain still runs.
	conn, err := d.connection(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.LookupDomainByName("test")
	if err != nil {
		t.Fatalf("domain %q after Destroy was refused: %v", "test", err)
	}
	defer dom.Free()
	if active, err := dom.IsActive(); err != nil || !active {
		t.Fatalf("domain %q after Shutdown/Destroy were refused: want running, got active=%v err=%v", "test", active, err)
	}
}

// defineRaw defines a domain with the given <metadata> content, bypassing Create.
func defineRaw(t *testing.T, d *Driver, name, metadata string) {
	t.Helper()
	dom := libvirtxml.Domain{
		Type: virtTCG, Name: name,
		Memory: &libvirtxml.DomainMemory{Value: 64, Unit: "MiB"},
		OS:     &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"}},
	}
	if metadata != "" {
		dom.Metadata = &libvirtxml.DomainMetadata{XML: metadata}
	}
	x, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.connection(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	vd, err := conn.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("define %s: %v", name, err)
	}
	vd.Free()
	t.Cleanup(func() {
		if vd, err := conn.LookupDomainByName(name); err == nil {
			vd.Undefine()
			vd.Free()
		}
	})
}

func TestForeignAndBrokenMetadataAreLeftAlone(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	// Someone else's metadata namespace: not Drover's.
	defineRaw(t, d, "foreign-1", `<app xmlns="https://example.com/app"><service>web</service></app>`)
	// Drover's namespace but no spec_hash: cannot be trusted.
	defineRaw(t, d, "broken-1", `<vm xmlns="`+metadataNS+`"><service>web</service></vm>`)

	vms, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List: want skipped domains not to fail it, got %v", err)
	}
	for _, name := range []string{"foreign-1", "broken-1"} {
		if _, ok := findVM(vms, name); ok {
			t.Errorf("List: want %s skipped, got it", name)
		}
		if err := d.Destroy(ctx, name); !errors.Is(err, hypervisor.ErrNotManaged) {
			t.Errorf("Destroy(%s): want ErrNotManaged, got %v", name, err)
		}
	}
	if _, err := d.Get(ctx, "broken-1"); err == nil || !strings.Contains(err.Error(), "spec_hash") {
		t.Errorf("Get(broken-1): want an error saying what is wrong, got %v", err)
	}
}

func imageInfoOf(t *testing.T, p string) (format, backing, backingFmt string) {
	t.Helper()
	// -U: a running QEMU holds the image's lock.
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", p).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", p, err)
	}
	var info struct {
		Format     string `json:"format"`
		Backing    string `json:"backing-filename"`
		BackingFmt string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Format, info.Backing, info.BackingFmt
}

func TestCreateDiskOverlayAndDestroy(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			d := newTestDriver(t)
			ctx := t.Context()
			golden := hypervisortest.MakeGolden(t, format)
			spec := hypervisortest.ValidSpec(t, "disk-"+format)
			spec.Kernel, spec.Initrd, spec.Cmdline = "", "", ""
			spec.Disk = golden
			hypervisortest.DestroyAtEnd(t, d, spec.Name)
			if _, err := d.Create(ctx, spec); err != nil {
				t.Fatalf("Create: %v", err)
			}
			overlay := filepath.Join(d.dir, overlayName(spec.Name))
			gotFmt, backing, backingFmt := imageInfoOf(t, overlay)
			if gotFmt != "qcow2" || backing != golden || backingFmt != format {
				t.Errorf("overlay: want qcow2 backed by %s (%s), got %s backed by %q (%q)", golden, format, gotFmt, backing, backingFmt)
			}
			// Pretend the guest wrote to its console, as virtlogd would.
			logPath := filepath.Join(d.dir, consoleLogName(spec.Name))
			for _, p := range []string{logPath, logPath + ".0"} {
				if err := os.WriteFile(p, []byte("boot\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			if err := d.Destroy(ctx, spec.Name); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			for _, p := range []string{overlay, logPath, logPath + ".0"} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("after Destroy: want %s gone, got stat err %v", p, err)
				}
			}
			if _, err := os.Stat(golden); err != nil {
				t.Errorf("after Destroy: golden image: %v", err)
			}
			if _, err := d.Get(ctx, spec.Name); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("Get after Destroy: want ErrNotFound, got %v", err)
			}
			if err := d.Destroy(ctx, spec.Name); !errors.Is(err, hypervisor.ErrNotFound) {
				t.Errorf("second Destroy: want ErrNotFound, got %v", err)
			}
		})
	}
}

// A golden disk that names another file would give the guest that file's bytes.
func TestCreateRefusesGoldenNamingOtherFiles(t *testing.T) {
	d := newTestDriver(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("secret\n", 1024)), 0o600); err != nil {
		t.Fatal(err)
	}
	qemuImg := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
	}
	base := hypervisortest.MakeGolden(t, "qcow2")
	tests := []struct {
		name, want string
		make       func(p string)
	}{
		{"backing file", "self-contained", func(p string) { qemuImg("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, p) }},
		{"qcow2 data file", "external data file", func(p string) {
			qemuImg("create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", p, "1M")
		}},
		{"vmdk flat extent", "vmdk", func(p string) {
			desc := "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 14 FLAT \"" + secret + "\" 0\n"
			if err := os.WriteFile(p, []byte(desc), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden := filepath.Join(dir, fmt.Sprintf("golden-%d", i))
			tt.make(golden)
			spec := hypervisortest.ValidSpec(t, fmt.Sprintf("unsafe-disk-%d", i))
			spec.Disk = golden
			_, err := d.Create(t.Context(), spec)
			if !errors.Is(err, hypervisor.ErrUnsafeImage) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), spec.Name) {
				t.Fatalf("Create: want ErrUnsafeImage (%s) naming the vm, got %v", tt.want, err)
			}
			assertNothingLeft(t, d, spec.Name)
		})
	}
}

// assertNothingLeft checks a failed Create left no domain and no files.
func assertNothingLeft(t *testing.T, d *Driver, name string) {
	t.Helper()
	if _, err := d.Get(t.Context(), name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("after failed Create: want no domain %s, got %v", name, err)
	}
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+".") {
			t.Errorf("after failed Create: want no files for %s, got %s", name, e.Name())
		}
	}
}

func TestCreateCleansUpOnFailure(t *testing.T) {
	d := newTestDriver(t)
	spec := hypervisortest.ValidSpec(t, "fail-1")
	spec.Disk = hypervisortest.MakeGolden(t, "raw")
	// The overlay exists by the time a host port is picked; make picking fail.
	d.pickPort = func() (int, error) { return 0, errors.New("no ports today") }
	_, err := d.Create(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "no ports today") || !strings.Contains(err.Error(), spec.Name) {
		t.Fatalf("Create: want the port error naming the vm, got %v", err)
	}
	assertNothingLeft(t, d, spec.Name)
}

func TestCreateCanceled(t *testing.T) {
	d := newTestDriver(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	spec := hypervisortest.ValidSpec(t, "canceled-1")
	_, err := d.Create(ctx, spec)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create(canceled ctx): want context.Canceled, got %v", err)
	}
	assertNothingLeft(t, d, spec.Name)
}

func TestShutdownKeepsDomain(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	spec := hypervisortest.ValidSpec(t, "shut-1")
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	start := time.Now()
	if err := d.Shutdown(ctx, spec.Name, 5*time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took >= 5*time.Second {
		t.Errorf("Shutdown: want a graceful stop before the timeout, took %v", took)
	}
	vm, err := d.Get(ctx, spec.Name)
	if err != nil || vm.State != hypervisor.StateShutoff {
		t.Fatalf("Get after Shutdown: want defined and shutoff, got %+v, %v", vm, err)
	}
	if vm.Address != "127.0.0.1" || vm.Port < 1 {
		t.Errorf("Get after Shutdown: want the recorded endpoint kept, got %s:%d", vm.Address, vm.Port)
	}
	if err := d.Shutdown(ctx, spec.Name, 5*time.Second); err != nil {
		t.Fatalf("Shutdown of a vm already off: want nil, got %v", err)
	}
}

func TestBridgeAndNetworkEndpoints(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	for _, nw := range []hypervisor.Network{
		{Mode: hypervisor.NetworkBridge, Bridge: "br0"},
		{Mode: hypervisor.NetworkLibvirt, Network: "default"},
	} {
		t.Run(nw.Mode, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "ep-"+nw.Mode)
			spec.Network = nw
			spec.GuestPort = 9000
			hypervisortest.DestroyAtEnd(t, d, spec.Name)
			vm, err := d.Create(ctx, spec)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			// The test driver invents a lease for every interface.
			if vm.Port != 9000 || vm.Address == "" || vm.Address == "127.0.0.1" {
				t.Errorf("Create: want the guest's own address and port 9000, got %s:%d", vm.Address, vm.Port)
			}
			if err := d.Shutdown(ctx, spec.Name, time.Second); err != nil {
				t.Fatal(err)
			}
			vm, err = d.Get(ctx, spec.Name)
			if err != nil || vm.Address != "" || vm.Port != 9000 {
				t.Errorf("Get of a stopped vm: want no address and port 9000, got %s:%d, %v", vm.Address, vm.Port, err)
			}
		})
	}
}

func TestConcurrentCreateDestroy(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("conc-%d", i)
			spec := hypervisortest.ValidSpec(t, name)
			if _, err := d.Create(ctx, spec); err != nil {
				errs[i] = err
				return
			}
			// A Destroy racing the same name's Create waits for it.
			errs[i] = d.Destroy(ctx, name)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("vm %d: %v", i, err)
		}
	}
	vms, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if strings.HasPrefix(vm.Name, "conc-") {
			t.Errorf("after concurrent create/destroy: %s left", vm.Name)
		}
	}
}

func TestMapState(t *testing.T) {
	tests := []struct {
		st     libvirt.DomainState
		reason int
		want   hypervisor.State
	}{
		{libvirt.DOMAIN_RUNNING, 0, hypervisor.StateRunning},
		{libvirt.DOMAIN_BLOCKED, 0, hypervisor.StateRunning},
		{libvirt.DOMAIN_SHUTDOWN, 0, hypervisor.StateRunning},
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_USER), hypervisor.StatePaused},
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_STARTING_UP), hypervisor.StateStarting},
		// Disk full under the overlay: alive, reported as such, not "dead".
		{libvirt.DOMAIN_PAUSED, int(libvirt.DOMAIN_PAUSED_IOERROR), hypervisor.StatePausedIOError},
		{libvirt.DOMAIN_PMSUSPENDED, 0, hypervisor.StatePaused},
		{libvirt.DOMAIN_SHUTOFF, int(libvirt.DOMAIN_SHUTOFF_SHUTDOWN), hypervisor.StateShutoff},
		{libvirt.DOMAIN_SHUTOFF, int(libvirt.DOMAIN_SHUTOFF_CRASHED), hypervisor.StateCrashed},
		{libvirt.DOMAIN_CRASHED, 0, hypervisor.StateCrashed},
		{libvirt.DOMAIN_NOSTATE, 0, hypervisor.StateUnknown},
	}
	for _, tt := range tests {
		if got := mapState(tt.st, tt.reason); got != tt.want {
			t.Errorf("mapState(%d, %d): want %s, got %s", tt.st, tt.reason, tt.want, got)
		}
	}
}

func TestPickAddress(t *testing.T) {
	addrs := func(a ...string) []libvirt.DomainInterface {
		var out []libvirt.DomainIPAddress
		for _, s := range a {
			out = append(out, libvirt.DomainIPAddress{Addr: s})
		}
		return []libvirt.DomainInterface{{Name: "eth0", Addrs: out}}
	}
	tests := []struct {
		name string
		in   []libvirt.DomainInterface
		want string
	}{
		{"none", nil, ""},
		{"ipv4", addrs("192.168.122.5"), "192.168.122.5"},
		{"ipv4 preferred", addrs("fd00::5", "10.1.2.3"), "10.1.2.3"},
		{"ipv6 only", addrs("fe80::1", "fd00::5"), "fd00::5"},
		{"loopback and link-local skipped", addrs("127.0.0.1", "::1", "169.254.1.1", "fe80::2"), ""},
		{"garbage skipped", addrs("not-an-ip", "10.0.0.9"), "10.0.0.9"},
	}
	for _, tt := range tests {
		if got := pickAddress(tt.in, ""); got != tt.want {
			t.Errorf("pickAddress(%s): want %q, got %q", tt.name, tt.want, got)
		}
	}
}

func BenchmarkList(b *testing.B) {
	d := newTestDriver(b)
	ctx := context.Background()
	dir := b.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	const n = 20
	for i := range n {
		spec := hypervisor.Spec{
			Name: fmt.Sprintf("bench-%02d", i), CPUs: 1, MemoryMiB: 128, Kernel: kernel,
			Network: hypervisor.Network{Mode: hypervisor.NetworkUser}, GuestPort: 8080,
			Meta: hypervisor.Metadata{Service: "bench", SpecHash: "feedface", Version: "1"},
		}
		if _, err := d.Create(ctx, spec); err != nil {
			b.Fatal(err)
		}
		hypervisortest.DestroyAtEnd(b, d, spec.Name)
	}
	b.ResetTimer()
	for b.Loop() {
		vms, err := d.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(vms) < n {
			b.Fatalf("List: want at least %d vms, got %d", n, len(vms))
		}
	}
}

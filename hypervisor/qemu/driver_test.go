package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

// requireQEMU stops a test that needs the real binaries when they are missing.
func requireQEMU(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			testenv.Unavailable(t, "%s not installed (install qemu-system-x86 and qemu-utils)", bin)
		}
	}
}

func newTestDriver(t testing.TB, stateDir string) *Driver {
	t.Helper()
	requireQEMU(t)
	d, err := New(t.Context(), Config{StateDir: stateDir}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatalf("New(%s): %v", stateDir, err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// traces is everything of a VM outside the driver's API: files of its entry (or of a
// Create's temporary directory) and live QEMU processes named after it.
func traces(d *Driver, name string) []string {
	var out []string
	dirs, _ := filepath.Glob(filepath.Join(d.root, tempPrefix+name+"-*"))
	going, _ := filepath.Glob(filepath.Join(d.root, goingPrefix+name+"-*"))
	dirs = append(dirs, going...)
	if fileExists(filepath.Join(d.root, name)) {
		dirs = append(dirs, filepath.Join(d.root, name))
	}
	for _, dir := range dirs {
		out = append(out, dir)
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	for _, pid := range hypervisortest.QEMUProcesses(name) {
		out = append(out, "qemu process "+strconv.Itoa(pid))
	}
	return out
}

// restartWithMoreMemory is an operator restarting a VM's QEMU by hand with twice the
// memory: the same command line otherwise, so the driver still finds and manages it.
func restartWithMoreMemory(t *testing.T, name string) {
	t.Helper()
	restartWith(t, name, func(args []string) []string {
		i := slices.Index(args, "-m")
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("restart %s: no -m in %q", name, args)
		}
		mib, err := strconv.Atoi(strings.TrimSuffix(args[i+1], "M"))
		if err != nil {
			t.Fatalf("restart %s: -m %s: %v", name, args[i+1], err)
		}
		args[i+1] = strconv.Itoa(2*mib) + "M"
		return args
	})
}

// restartWith restarts a VM's QEMU by hand with its command line changed by edit.
func restartWith(t *testing.T, name string, edit func([]string) []string) {
	t.Helper()
	pids := hypervisortest.QEMUProcesses(name)
	if len(pids) != 1 {
		t.Fatalf("restart %s: want one qemu process, got %v", name, pids)
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := edit(strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"))
	hypervisortest.KillQEMU(t, name)
	// Its pid file and socket are free once it is gone.
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(hypervisortest.QEMUProcesses(name)) > 0 {
		select {
		case <-deadline.C:
			t.Fatalf("restart %s: killed qemu still running after 30s", name)
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-tick.C:
		}
	}
	cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	// -daemonize: it returns once QEMU is up.
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("restart %s: %v: %s", name, err, out)
	}
}

func guestImages(t testing.TB) hypervisortest.Images {
	imgs := testenv.Images(t)
	return hypervisortest.Images{
		Kernel:    imgs.Kernel.Path,
		Initrd:    imgs.Initrd.Path,
		Cmdline:   testenv.GuestCmdline,
		GuestPort: testenv.GuestPort,
		Reach:     testenv.GuestReach,
		Disk:      testenv.TinyDisk(t, imgs).Path,
	}
}

// attachedDisks asks the VM's QEMU which drives it has, as QMP reports them.
func attachedDisks(t *testing.T, d *Driver, name string) []hypervisortest.AttachedDisk {
	t.Helper()
	blocks, err := queryBlock(t.Context(), d.paths(name).qmp)
	if err != nil {
		t.Fatalf("query-block of %s: %v", name, err)
	}
	var out []hypervisortest.AttachedDisk
	for _, b := range blocks {
		// The firmware's flash (pflash0, pflash1) is not a disk of the guest's.
		if b.Inserted != nil && !strings.HasPrefix(b.Device, "pflash") {
			out = append(out, hypervisortest.AttachedDisk{File: b.Inserted.File, ReadOnly: b.Inserted.RO})
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	requireQEMU(t)
	hypervisortest.Conformance(t, hypervisortest.Harness{
		New: func(t *testing.T) hypervisortest.Env {
			d := newTestDriver(t, t.TempDir())
			return hypervisortest.Env{
				Driver: d,
				Traces: func(name string) []string { return traces(d, name) },
				MakeForeign: func(t *testing.T, name string) {
					// Someone else's directory in Drover's state dir.
					dir := filepath.Join(d.root, name)
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				},
				KillOutOfBand: hypervisortest.KillQEMU,
				EditOutOfBand: restartWithMoreMemory,
				Disks:         func(t *testing.T, name string) []hypervisortest.AttachedDisk { return attachedDisks(t, d, name) },
			}
		},
		Images:      guestImages(t),
		RunsGuests:  true,
		Unavailable: testenv.Unavailable,
	})
}

func TestNewErrors(t *testing.T) {
	requireQEMU(t)
	tests := []struct {
		name string
		cfg  Config
		log  *slog.Logger
		want []string // substrings of the error
	}{
		{"missing qemu", Config{StateDir: t.TempDir(), QEMU: "/nonexistent/qemu-system-x86_64"}, hypervisortest.Logger(t),
			[]string{"/nonexistent/qemu-system-x86_64", "install the Debian package qemu-system-x86"}},
		{"missing qemu-img", Config{StateDir: t.TempDir(), QEMUImg: "/nonexistent/qemu-img"}, hypervisortest.Logger(t),
			[]string{"/nonexistent/qemu-img", "install the Debian package qemu-utils"}},
		{"bad accel", Config{StateDir: t.TempDir(), Accel: "hvf"}, hypervisortest.Logger(t), []string{`accel "hvf"`}},
		{"no state dir", Config{}, hypervisortest.Logger(t), []string{"no state directory"}},
		{"no logger", Config{StateDir: t.TempDir()}, nil, []string{"no logger"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(t.Context(), tt.cfg, tt.log)
			if err == nil {
				t.Fatalf("New: want an error containing %q, got a driver %+v", tt.want, d)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New: want an error containing %q, got %v", w, err)
				}
			}
		})
	}
}

// The default binaries come from PATH; with neither there the error says which
// package to install.
func TestNewMissingFromPath(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := New(t.Context(), Config{StateDir: t.TempDir()}, hypervisortest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64 not found (install the Debian package qemu-system-x86)") {
		t.Fatalf("New with an empty PATH: want the missing qemu-system-x86_64 named with its package, got %v", err)
	}
}

// A spec the shared validation rejects is ErrInvalidSpec, named after the vm, and the
// only network mode the qemu driver accepts is user.
func TestCreateRejectsInvalidSpec(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*hypervisor.Spec)
		wantErr string
	}{
		{"zero cpus", func(s *hypervisor.Spec) { s.CPUs = 0 }, "cpus 0"},
		{"no network", func(s *hypervisor.Spec) { s.Network.Mode = "" }, "no network mode"},
		{"odd network", func(s *hypervisor.Spec) { s.Network.Mode = "tap" }, `network mode "tap": want user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "vm-1")
			tt.mutate(&spec)
			_, err := (&Driver{}).Create(t.Context(), spec)
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), `create vm "vm-1"`) ||
				!strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Create: want ErrInvalidSpec naming vm-1 and saying %q, got %v", tt.wantErr, err)
			}
		})
	}
}

// TestRefusedNetworks: a libvirt network is the libvirt driver's, and a bridge that
// does not exist is the operator's to make; either is a clear error, nothing made.
func TestRefusedNetworks(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	for _, tc := range []struct {
		nw   hypervisor.Network
		want error
		says string
	}{
		{hypervisor.Network{Mode: hypervisor.NetworkLibvirt, Network: "default"}, ErrUnsupportedNetwork, "not supported by the qemu driver"},
		{hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "drnosuchbr0"}, hypervisor.ErrNoBridge, `bridge "drnosuchbr0": host bridge not found`},
		{hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "lo"}, hypervisor.ErrNoBridge, "it is a device interface, not a bridge"},
	} {
		t.Run(tc.nw.Mode+"-"+tc.nw.Bridge, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "net-"+tc.nw.Mode)
			spec.Network = tc.nw
			_, err := d.Create(t.Context(), spec)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Create with network %+v: want %v saying %q, got %v", tc.nw, tc.want, tc.says, err)
			}
			assertEmptyRoot(t, d)
		})
	}
}

// assertEmptyRoot wants nothing at all in the driver's state directory.
func assertEmptyRoot(t *testing.T, d *Driver) {
	t.Helper()
	entries, err := os.ReadDir(d.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("state dir: want empty, got %s", e.Name())
	}
}

// A QEMU that fails to start leaves nothing behind: no entry, no temporary directory.
func TestCreateFailureCleansUp(t *testing.T) {
	requireQEMU(t)
	falseBin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false binary")
	}
	d, err := New(t.Context(), Config{StateDir: t.TempDir(), QEMU: falseBin}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := hypervisortest.ValidSpec(t, "fails-1")
	_, err = d.Create(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "start qemu") || !strings.Contains(err.Error(), spec.Name) {
		t.Fatalf("Create with a failing qemu: want a start error naming the vm, got %v", err)
	}
	assertEmptyRoot(t, d)
}

// A golden disk that names another file would give the guest bytes nobody verified:
// a backing file, or a qcow2 external data file pointing at a host file (the guest
// would read /etc/shadow as its disk). Create refuses both before making anything.
func TestCreateRefusesUnsafeGolden(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(hostFile, bytes.Repeat([]byte("host secret\n"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.qcow2")
	chained, dataFile := filepath.Join(dir, "chained.qcow2"), filepath.Join(dir, "datafile.qcow2")
	for _, args := range [][]string{
		{"create", "-q", "-f", "qcow2", base, "16M"},
		{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, chained},
		{"create", "-q", "-f", "qcow2", "-o", "data_file=" + hostFile + ",data_file_raw=on", dataFile, "48K"},
	} {
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v: %s", args, err, out)
		}
	}
	for _, golden := range []string{chained, dataFile} {
		spec := hypervisortest.ValidSpec(t, "unsafe-1")
		spec.Disk = golden
		_, err := d.Create(t.Context(), spec)
		if !errors.Is(err, hypervisor.ErrUnsafeImage) || !strings.Contains(err.Error(), golden) {
			t.Errorf("Create over golden %s: want ErrUnsafeImage naming it, got %v", filepath.Base(golden), err)
		}
		assertEmptyRoot(t, d)
	}
}

// realSpec boots the test guest.
func realSpec(t testing.TB, name, version string) hypervisor.Spec {
	imgs := guestImages(t)
	spec := hypervisortest.ValidSpec(t, name)
	spec.Kernel, spec.Initrd, spec.Cmdline = imgs.Kernel, imgs.Initrd, imgs.Cmdline(version)
	spec.GuestPort = imgs.GuestPort
	spec.Meta.Version = version
	return spec
}

// The port picked for the forward is taken before QEMU binds it: Create retries on
// another one, records the one it got, and gives up after maxPortAttempts.
func TestPortTakenBeforeStart(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	var held []int
	for range maxPortAttempts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		held = append(held, l.Addr().(*net.TCPAddr).Port)
	}

	t.Run("retried", func(t *testing.T) {
		var calls int
		d.pickPort = func() (int, error) {
			calls++
			if calls == 1 {
				return held[0], nil
			}
			return hypervisor.FreeLocalPort()
		}
		spec := realSpec(t, "port-retry", "1.0")
		hypervisortest.DestroyAtEnd(t, d, spec.Name)
		vm, err := d.Create(t.Context(), spec)
		if err != nil {
			t.Fatalf("Create with the first port taken: want a retry on another, got %v", err)
		}
		if calls != 2 || vm.Port == held[0] {
			t.Errorf("Create: want a second pick and a port other than %d, got %d picks and port %d", held[0], calls, vm.Port)
		}
		rec, err := readEntry(d.root, spec.Name)
		if err != nil || rec.HostPort != vm.Port {
			t.Errorf("metadata after retry: want host_port %d, got %+v, %v", vm.Port, rec, err)
		}
		if vm.State != hypervisor.StateRunning {
			t.Errorf("Create: want running, got %s", vm.State)
		}
	})

	t.Run("gives up", func(t *testing.T) {
		var calls int
		d.pickPort = func() (int, error) {
			p := held[calls%len(held)]
			calls++
			return p, nil
		}
		spec := realSpec(t, "port-giveup", "1.0")
		hypervisortest.DestroyAtEnd(t, d, spec.Name)
		_, err := d.Create(t.Context(), spec)
		if err == nil || !strings.Contains(err.Error(), "host forwarding") {
			t.Fatalf("Create with every port taken: want QEMU's host forwarding error, got %v", err)
		}
		if calls != maxPortAttempts {
			t.Errorf("Create with every port taken: want %d attempts, got %d", maxPortAttempts, calls)
		}
		if got := traces(d, spec.Name); len(got) > 0 {
			t.Errorf("after failed Create: want nothing left, got %q", got)
		}
	})
}

// fabricate writes the entry of a VM whose QEMU is not running, as a Drover that died
// with its VMs would leave it.
func fabricate(t testing.TB, d *Driver, name string, port, pid int) record {
	t.Helper()
	p := d.paths(name)
	rec := record{
		Format: recordFormat, Name: name, Service: "web", SpecHash: "3f2a91c0aa", Revision: "abc",
		Version: "1.0", Created: time.Date(2025, 11, 25, 20, 0, 0, 0, time.UTC),
		NetworkMode: hypervisor.NetworkUser, HostPort: port, GuestPort: 8080, Accel: AccelTCG,
	}
	if err := d.makeEntry(p, rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.pid, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return rec
}

// deadPid is the pid of a process that has exited.
func deadPid(t testing.TB) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestCorruptAndForeignEntriesReportedAndUntouched(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := t.Context()
	good := fabricate(t, d, "good-1", 40001, deadPid(t))
	// Our own pid is alive but not this VM's QEMU: a recycled pid.
	reused := fabricate(t, d, "reused-1", 40002, os.Getpid())

	writeFile := func(rel, content string) string {
		p := filepath.Join(d.root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	okRec, _ := encodeRecord(good)
	bad := []struct {
		name    string
		file    string
		content string
		want    string // in the problem and in Get's error
	}{
		{"bad-json", "bad-json/metadata.json", "{not json", "parse"},
		{"no-format", "no-format/metadata.json", `{"name":"no-format","service":"web"}`, "format"},
		{"wrong-name", "wrong-name/metadata.json", string(okRec), `names vm "good-1"`},
		{"no-metadata", "no-metadata/disk.img", "bytes", "no metadata.json"},
		{"stray-file", "stray-file", "hello", "not a directory"},
		{".hidden", ".hidden/metadata.json", string(okRec), "not a vm name"},
	}
	contents := map[string]string{}
	for _, b := range bad {
		contents[writeFile(b.file, b.content)] = b.content
	}

	start := time.Now()
	vms, err := d.List(ctx)
	if err != nil {
		t.Fatalf("List with corrupt entries: want the good ones listed, got %v", err)
	}
	t.Logf("List over %d entries took %v", len(bad)+2, time.Since(start))
	var names []string
	for _, vm := range vms {
		names = append(names, vm.Name)
	}
	if want := []string{"good-1", "reused-1"}; !slices.Equal(names, want) {
		t.Fatalf("List: want %v, got %v", want, names)
	}
	for i, want := range []record{good, reused} {
		if vms[i].State != hypervisor.StateCrashed || vms[i].Meta != want.meta() || vms[i].Port != want.HostPort {
			t.Errorf("List %s: want crashed with meta %+v port %d, got %+v", want.Name, want.meta(), want.HostPort, vms[i])
		}
	}

	problems := d.problemEntries()
	if len(problems) != len(bad) {
		t.Errorf("Problems: want %d, got %+v", len(bad), problems)
	}
	for _, b := range bad {
		i := slices.IndexFunc(problems, func(p problem) bool { return p.Name == b.name })
		if i < 0 || !strings.Contains(problems[i].Err, b.want) {
			t.Errorf("Problems: want %s reported with %q, got %+v", b.name, b.want, problems)
		}
		if hypervisor.ValidName(b.name) {
			if err := d.Destroy(ctx, b.name); !errors.Is(err, hypervisor.ErrNotManaged) {
				t.Errorf("Destroy(%s): want ErrNotManaged, got %v", b.name, err)
			}
			if _, err := d.Get(ctx, b.name); !errors.Is(err, hypervisor.ErrNotManaged) || !strings.Contains(err.Error(), b.want) {
				t.Errorf("Get(%s): want ErrNotManaged saying %q, got %v", b.name, b.want, err)
			}
		}
	}

	// The good ones are still managed: a recycled pid is never killed.
	for _, name := range []string{"good-1", "reused-1"} {
		if err := d.Destroy(ctx, name); err != nil {
			t.Errorf("Destroy(%s): %v", name, err)
		}
	}
	for p, want := range contents {
		got, err := os.ReadFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s after List and Destroy: want untouched %q, got %q, %v", p, want, got, err)
		}
	}
}

func TestRestartedDriverManagesVMs(t *testing.T) {
	stateDir := t.TempDir()
	d1 := newTestDriver(t, stateDir)
	ctx := t.Context()
	spec := realSpec(t, "restart-1", "r-1")
	hypervisortest.DestroyAtEnd(t, d1, spec.Name)
	vm, err := d1.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	d2 := newTestDriver(t, stateDir)
	vms, err := d2.List(ctx)
	if err != nil {
		t.Fatalf("List from a new driver: %v", err)
	}
	if len(vms) != 1 || !reflect.DeepEqual(vms[0], vm) {
		t.Fatalf("List from a new driver: want [%+v], got %+v", vm, vms)
	}
	if err := d2.Destroy(ctx, spec.Name); err != nil {
		t.Fatalf("Destroy from a new driver: %v", err)
	}
	if got := traces(d2, spec.Name); len(got) > 0 {
		t.Errorf("after Destroy from a new driver: want nothing left, got %q", got)
	}
	if _, err := d1.Get(ctx, spec.Name); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("Get from the first driver: want ErrNotFound, got %v", err)
	}
}

// helperEnv makes the test binary act as a short-lived Drover: create one VM, print
// it, exit. See TestVMOutlivesDriverProcess.
const helperEnv = "DROVER_QEMU_TEST_CREATE"

type helperRequest struct {
	StateDir string
	Spec     hypervisor.Spec
}

func TestMain(m *testing.M) {
	if req := os.Getenv(helperEnv); req != "" {
		os.Exit(runHelper(req))
	}
	os.Exit(m.Run())
}

func runHelper(req string) int {
	var r helperRequest
	if err := json.Unmarshal([]byte(req), &r); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	d, err := New(ctx, Config{StateDir: r.StateDir}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	vm, err := d.Create(ctx, r.Spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(vm); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

func TestVMOutlivesDriverProcess(t *testing.T) {
	requireQEMU(t)
	stateDir := t.TempDir()
	spec := realSpec(t, "outlive-1", "o-1")
	req, err := json.Marshal(helperRequest{StateDir: stateDir, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	d := newTestDriver(t, stateDir)
	hypervisortest.DestroyAtEnd(t, d, spec.Name)

	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+string(req))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("helper drover: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("helper drover: %v", err)
	}
	var created hypervisor.VM
	if err := json.Unmarshal(out, &created); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	// The helper has exited; its VM must not have gone with it.
	if err := hypervisortest.WaitHealthy(t.Context(), created, "o-1", 2*time.Minute); err != nil {
		t.Fatalf("vm after its driver's process exited: %v", err)
	}
	vms, err := d.List(t.Context())
	if err != nil || len(vms) != 1 || !reflect.DeepEqual(vms[0], created) {
		t.Fatalf("List from this process: want [%+v], got %+v, %v", created, vms, err)
	}
	pids := hypervisortest.QEMUProcesses(spec.Name)
	if len(pids) != 1 {
		t.Fatalf("qemu processes named %s (ps finds it by -name): want 1, got %v", spec.Name, pids)
	}
	sid, mine := sessionOf(t, pids[0]), sessionOf(t, os.Getpid())
	if sid == mine {
		t.Errorf("qemu pid %d: want its own session, got the test's session %s", pids[0], sid)
	}
}

func TestDecodeRecord(t *testing.T) {
	good := `{"format":"` + recordFormat + `","name":"vm-1","service":"web","spec_hash":"ab","revision":"r","version":"1",` +
		`"created":"2025-11-25T21:00:00+01:00","network_mode":"user","host_port":4000,"guest_port":8080,"accel":"tcg"}`
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"good", good, ""},
		{"not json", "{", "parse"},
		{"unknown field", strings.Replace(good, `"accel"`, `"extra":1,"accel"`, 1), "unknown field"},
		{"foreign format", strings.Replace(good, recordFormat, "other/1", 1), "format"},
		{"no service", strings.Replace(good, `"service":"web"`, `"service":""`, 1), "no service"},
		{"no spec hash", strings.Replace(good, `"spec_hash":"ab"`, `"spec_hash":""`, 1), "no spec_hash"},
		{"bad port", strings.Replace(good, `"host_port":4000`, `"host_port":0`, 1), "host_port 0"},
		{"bridge", strings.Replace(good, `"network_mode":"user"`, `"network_mode":"bridge"`, 1), "bridged with bridge"},
		{"libvirt network", strings.Replace(good, `"network_mode":"user"`, `"network_mode":"network"`, 1), "network_mode"},
		{"no created", strings.Replace(good, `"created":"2025-11-25T21:00:00+01:00",`, ``, 1), "no created"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := decodeRecord([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodeRecord: want ok, got %v", err)
				}
				if want := time.Date(2025, 11, 25, 20, 0, 0, 0, time.UTC); !rec.Created.Equal(want) || rec.Created.Location() != time.UTC {
					t.Errorf("created: want %v, got %v", want, rec.Created)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeRecord: want error containing %q, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestMapStatus(t *testing.T) {
	tests := []struct {
		status string
		want   hypervisor.State
	}{
		{"running", hypervisor.StateRunning},
		{"shutdown", hypervisor.StateShutoff},
		{"prelaunch", hypervisor.StateStarting},
		{"paused", hypervisor.StatePaused},
		{"io-error", hypervisor.StatePausedIOError},
		{"guest-panicked", hypervisor.StateCrashed},
		{"internal-error", hypervisor.StateCrashed},
		{"something-new", hypervisor.StateUnknown},
	}
	for _, tt := range tests {
		if got := mapStatus(tt.status); got != tt.want {
			t.Errorf("mapStatus(%q): want %s, got %s", tt.status, tt.want, got)
		}
	}
}

func TestArgs(t *testing.T) {
	d := &Driver{root: "/var/lib/dro,ver/qemu", accel: AccelTCG, consoleSize: consoleLogSize}
	spec := hypervisortest.ValidSpec(t, "web-3f2a91c0-x1")
	spec.Disk = "/srv/golden.qcow2"
	args := d.args(d.paths(spec.Name), spec, record{HostPort: 41234})
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"-name web-3f2a91c0-x1 ",
		"-machine q35 ",
		"-accel tcg ",
		"-m 128M ",
		"-daemonize ",
		"-pidfile /var/lib/dro,ver/qemu/web-3f2a91c0-x1/qemu.pid ",
		"socket,id=qmp0,path=/var/lib/dro,,ver/qemu/web-3f2a91c0-x1/qmp.sock,server=on,wait=off",
		"-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:41234-:8080 ",
		"-chardev ringbuf,id=console0,size=1048576 -serial chardev:console0 ",
		"-device virtio-net-pci,netdev=net0",
		"-kernel " + spec.Kernel + " -initrd " + spec.Initrd + " -append console=ttyS0",
		"-drive file=/var/lib/dro,,ver/qemu/web-3f2a91c0-x1/disk.qcow2,format=qcow2,if=virtio",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args: want %q in\n%s", want, joined)
		}
	}
}

// Create, List and Destroy from many goroutines: the race detector and the name locks
// get exercised without booting anything (fabricated entries).
func TestConcurrentListDestroy(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	ctx := t.Context()
	const n = 10
	for i := range n {
		fabricate(t, d, "conc-"+strconv.Itoa(i), 40100+i, deadPid(t))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := d.Destroy(ctx, "conc-"+strconv.Itoa(i)); err != nil {
				t.Errorf("Destroy: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := d.List(ctx); err != nil {
				t.Errorf("List: %v", err)
			}
		}()
	}
	wg.Wait()
	assertEmptyRoot(t, d)
}

// sessionOf reads a process's session id, field 6 of /proc/<pid>/stat.
func sessionOf(t *testing.T, pid int) string {
	t.Helper()
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:])) // state ppid pgrp session ...
	if len(fields) < 4 {
		t.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return fields[3]
}

func TestChooseAccel(t *testing.T) {
	auto := AccelTCG
	if hypervisor.KVMAvailable() {
		auto = AccelKVM
	}
	tests := []struct {
		in, want, wantErr string
	}{
		{AccelAuto, auto, ""},
		{AccelKVM, AccelKVM, ""},
		{AccelTCG, AccelTCG, ""},
		{"hvf", "", `accel "hvf"`},
	}
	for _, tt := range tests {
		got, err := chooseAccel(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("chooseAccel(%q): want error containing %q, got %q, %v", tt.in, tt.wantErr, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("chooseAccel(%q): want %q, got %q, %v", tt.in, tt.want, got, err)
		}
	}
}

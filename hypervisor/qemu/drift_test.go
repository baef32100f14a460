package qemu

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

func TestArgsDrift(t *testing.T) {
	base := []string{
		"-name", "web-1", "-machine", "q35", "-accel", "tcg", "-smp", "1", "-m", "128M",
		"-nodefaults", "-no-user-config", "-daemonize", "-pidfile", "/s/web-1/qemu.pid", "-no-shutdown",
		"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:41000-:8080", "-device", "virtio-net-pci,netdev=net0,romfile=",
		"-kernel", "/img/vmlinuz", "-initrd", "/img/initrd", "-append", "console=ttyS0 quiet",
	}
	with := func(edit func([]string) []string) []string { return edit(slices.Clone(base)) }
	set := func(opt, v string) func([]string) []string {
		return func(a []string) []string { a[slices.Index(a, opt)+1] = v; return a }
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"same", base, nil},
		{"memory", with(set("-m", "256M")), []string{"memory: created with 128 MiB, now 256 MiB"}},
		{"memory in GiB, default unit", with(set("-m", "1G")), []string{"memory: created with 128 MiB, now 1024 MiB"}},
		{"memory without a unit is the same", with(set("-m", "128")), nil},
		{"vcpus", with(set("-smp", "2")), []string{"vcpus: created with 1, now 2"}},
		{"kernel", with(set("-kernel", "/b/vmlinuz")), []string{"kernel: created with /img/vmlinuz, now /b/vmlinuz"}},
		{"cmdline", with(set("-append", "console=ttyS0 single")), []string{"cmdline: created with console=ttyS0 quiet, now console=ttyS0 single"}},
		{"port forward", with(set("-netdev", "user,id=net0,hostfwd=tcp:0.0.0.0:41000-:8080")),
			[]string{"network: created with user,id=net0,hostfwd=tcp:127.0.0.1:41000-:8080, now user,id=net0,hostfwd=tcp:0.0.0.0:41000-:8080"}},
		{"disk added", with(func(a []string) []string { return append(a, "-drive", "file=/tmp/x.img,if=virtio") }),
			[]string{"disk added: file=/tmp/x.img,if=virtio"}},
		{"second device", with(func(a []string) []string { return append(a, "-device", "virtio-rng-pci") }),
			[]string{"device added: virtio-rng-pci"}},
		{"initrd dropped", with(func(a []string) []string {
			i := slices.Index(a, "-initrd")
			return slices.Delete(a, i, i+2)
		}), []string{"initrd removed: /img/initrd"}},
		{"flag added", with(func(a []string) []string { return append(a, "-snapshot") }),
			[]string{"qemu option -snapshot added: set"}},
		{"flag dropped", with(func(a []string) []string {
			i := slices.Index(a, "-no-shutdown")
			return slices.Delete(a, i, i+1)
		}), []string{"qemu option -no-shutdown removed: set"}},
	}
	for _, tt := range tests {
		got := argsDrift(base, tt.got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("argsDrift(%s):\nwant %q\ngot  %q", tt.name, tt.want, got)
		}
	}
}

func TestMemoryOption(t *testing.T) {
	for in, want := range map[string]string{
		"128M": "128 MiB", "128": "128 MiB", "2G": "2048 MiB", "1T": "1048576 MiB", "512m": "512 MiB",
		"size=1G,slots=2": "size=1G,slots=2", "": "",
	} {
		if got := memoryOption(in); got != want {
			t.Errorf("memoryOption(%q): want %q, got %q", in, want, got)
		}
	}
}

func TestProcessArgs(t *testing.T) {
	got, err := processArgs(os.Getpid())
	if err != nil || !slices.Equal(got, os.Args[1:]) {
		t.Errorf("processArgs(self): want %q, got %q, %v", os.Args[1:], got, err)
	}
	if _, err := processArgs(deadPid(t)); err == nil {
		t.Errorf("processArgs(dead pid): want an error, got none")
	}
}

// drift of a live process: this test's own, standing in for QEMU.
func TestDriftOfProcess(t *testing.T) {
	rec := record{Args: slices.Clone(os.Args[1:]), CreatedWith: &createdWith{CPUs: 1, MemoryMiB: 128}}
	if got := drift(rec, os.Getpid()); len(got) > 0 {
		t.Errorf("drift of a process as started: want none, got %q", got)
	}
	rec.Args = append(rec.Args, "-m", "128M")
	if got, want := drift(rec, os.Getpid()), []string{"memory removed: 128 MiB"}; !slices.Equal(got, want) {
		t.Errorf("drift of a process started otherwise: want %q, got %q", want, got)
	}
	if got := drift(rec, 0); len(got) > 0 {
		t.Errorf("drift without a process: want none from the arguments, got %q", got)
	}
	if got := drift(record{}, os.Getpid()); len(got) > 0 {
		t.Errorf("drift of an entry recorded before drift was: want none, got %q", got)
	}
}

func TestDriftOfOverlay(t *testing.T) {
	requireQEMU(t)
	dir := t.TempDir()
	qemuImg := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %q: %v: %s", args, err, out)
		}
	}
	golden := filepath.Join(dir, "golden.qcow2")
	other := filepath.Join(dir, "other.qcow2")
	overlay := filepath.Join(dir, "disk.qcow2")
	qemuImg("create", "-q", "-f", "qcow2", golden, "16M")
	qemuImg("create", "-q", "-f", "qcow2", other, "16M")
	qemuImg("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", golden, overlay)
	rec := record{CreatedWith: &createdWith{Disk: golden, Overlay: overlay}}

	if got, err := qcow2Backing(overlay); err != nil || got != golden {
		t.Fatalf("qcow2Backing: want %s, got %q, %v", golden, got, err)
	}
	if got, err := qcow2Backing(golden); err != nil || got != "" {
		t.Errorf("qcow2Backing of a standalone image: want none, got %q, %v", got, err)
	}
	raw := filepath.Join(dir, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := qcow2Backing(raw); err == nil {
		t.Errorf("qcow2Backing of a raw file: want an error, got none")
	}
	if got := drift(rec, 0); len(got) > 0 {
		t.Errorf("overlay as created: want no drift, got %q", got)
	}

	qemuImg("rebase", "-q", "-u", "-F", "qcow2", "-b", other, overlay)
	want := []string{"disk " + overlay + ": backing file created as " + golden + ", now " + other}
	if got := drift(rec, 0); !slices.Equal(got, want) {
		t.Errorf("rebased overlay:\nwant %q\ngot  %q", want, got)
	}
	if err := os.Remove(overlay); err != nil {
		t.Fatal(err)
	}
	if got := drift(rec, 0); !slices.Equal(got, []string{"disk removed: " + overlay}) {
		t.Errorf("overlay removed: want it named, got %q", got)
	}
	if _, err := qcow2Backing(overlay); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("qcow2Backing of a missing file: want ErrNotExist, got %v", err)
	}
}

// A VM started before user networking was restricted and the console capped keeps
// running as it was; List names both so the operator recreates it.
func TestUnhardened(t *testing.T) {
	old := []string{
		"-name", "web-1", "-no-shutdown",
		"-chardev", "file,id=console0,path=/var/lib/drover/qemu/web-1/console.log",
		"-serial", "chardev:console0",
		"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:41234-:8080",
	}
	got := unhardened(old)
	if len(got) != 2 || !strings.HasPrefix(got[0], "console:") || !strings.HasPrefix(got[1], "network: user networking not restricted") {
		t.Errorf("unhardened(args of an older Drover): want a console line and a network line, got %q", got)
	}
	d := &Driver{root: "/var/lib/drover/qemu", accel: AccelTCG, consoleSize: consoleLogSize}
	spec := hypervisortest.ValidSpec(t, "web-1")
	if got := unhardened(d.args(d.paths(spec.Name), spec, record{HostPort: 41234})); len(got) > 0 {
		t.Errorf("unhardened(args Create uses now): want nothing, got %q", got)
	}
}

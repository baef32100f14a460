package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

// fullDiskEnv marks the run of TestPausedByFullDisk inside its own mount namespace.
const fullDiskEnv = "DROVER_QEMU_TEST_FULL_DISK"

// A guest whose overlay's filesystem fills up is paused by QEMU, not failed, and List
// reports it as paused-ioerror. The small filesystem is a tmpfs mounted in a mount
// namespace of the test's own (unshare), so the host's mount table never changes; the
// test binary re-runs itself in there.
func TestPausedByFullDisk(t *testing.T) {
	requireQEMU(t)
	if os.Getenv(fullDiskEnv) == "" {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			testenv.Unavailable(t, "unshare not installed (util-linux): %v", err)
		}
		guestImages(t) // built out here, where the image cache is writable for sure
		ns := []string{"--mount", "--propagation", "private"}
		if os.Geteuid() != 0 {
			// A user namespace lets an unprivileged test mount its tmpfs.
			ns = append([]string{"--map-root-user"}, ns...)
		}
		if out, err := exec.Command(unshare, append(ns, "true")...).CombinedOutput(); err != nil {
			testenv.Unavailable(t, "cannot make a mount namespace here: %v: %s", err, out)
		}
		cmd := exec.CommandContext(t.Context(), unshare, append(ns,
			os.Args[0], "-test.run", "^TestPausedByFullDisk$", "-test.v", "-test.count", "1")...)
		cmd.Env = append(os.Environ(), fullDiskEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in its own mount namespace:\n%s", out)
		if err != nil {
			t.Fatalf("test in its own mount namespace: %v", err)
		}
		return
	}

	// Inside the namespace: a 12 MiB filesystem for a 64 MiB disk.
	stateDir := t.TempDir()
	if err := syscall.Mount("tmpfs", stateDir, "tmpfs", 0, "size=12m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", stateDir, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(stateDir, syscall.MNT_DETACH) })
	golden := filepath.Join(t.TempDir(), "golden.raw")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "raw", golden, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	d := newTestDriver(t, stateDir)
	spec := realSpec(t, "full-1", "f-1")
	spec.Disk = golden
	spec.Cmdline += " " + testenv.GuestFillDisk
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	// The guest fills its disk as soon as it is up; it may be paused before its
	// service ever answers.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		// Not ctx: its end would cut the last look short and report "unknown".
		got, err := d.Get(t.Context(), spec.Name)
		if err == nil && got.State == hypervisor.StatePausedIOError {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("guest filling a disk on a full filesystem: want state %s, last got %+v, %v", hypervisor.StatePausedIOError, got, err)
		case <-tick.C:
		}
	}
	// The operator's way out: Destroy works on the full filesystem, and frees it.
	if err := d.Destroy(t.Context(), spec.Name); err != nil {
		t.Fatalf("Destroy of a vm paused by a full disk, on that full filesystem: %v", err)
	}
	if got := traces(d, spec.Name); len(got) > 0 {
		t.Errorf("after Destroy: want no traces, got %q", got)
	}
}

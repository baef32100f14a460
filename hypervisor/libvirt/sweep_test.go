package libvirt

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

func TestLeftoverOf(t *testing.T) {
	tests := []struct {
		file, want string
		ok         bool
	}{
		{"web-3f2a91c0-x1.qcow2", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.console.log", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.console.log.0", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.console.log.12", "web-3f2a91c0-x1", true},
		{"web.console.log.bak", "", false},
		{"web.console.log.", "", false},
		{"web.qcow2.bak", "", false},
		{"a.b.qcow2", "", false},
		{".qcow2", "", false},
		{"notes.txt", "", false},
		{"-web.qcow2", "", false},
		{"web-3f2a91c0-x1.cidata.iso", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.uefi-vars.fd", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.cidata.iso.tmp-123", "web-3f2a91c0-x1", true},
		{"web-3f2a91c0-x1.cidata.iso.tmp-ws-456", "web-3f2a91c0-x1", true},
		{"web.cidata.iso.bak", "", false},
		{".cidata.iso.tmp-1", "", false},
	}
	for _, tt := range tests {
		got, ok := leftoverOf(tt.file)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("leftoverOf(%q): want %q %v, got %q %v", tt.file, tt.want, tt.ok, got, ok)
		}
	}
}

// TestSweep plays a Drover killed between making a VM's overlay and defining its
// domain, and one killed mid-Destroy after the domain went, beside files Sweep must
// leave alone.
func TestSweep(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	d := newTestDriver(t)
	ctx := t.Context()
	golden := hypervisortest.MakeGolden(t, "qcow2")
	old := time.Now().Add(-2 * sweepMinAge)

	file := func(name string, age time.Time) string {
		t.Helper()
		p := filepath.Join(d.dir, name)
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, age, age); err != nil {
			t.Fatal(err)
		}
		return p
	}
	overlay := func(vm string, age time.Time) string {
		t.Helper()
		p := filepath.Join(d.dir, overlayName(vm))
		if err := hypervisor.CreateOverlay(ctx, qemuImg, p, golden, "qcow2", 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, age, age); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Killed after the overlay, before the define.
	killedOverlay := overlay("sweep-killed", old)
	// Killed while writing its cloud-init seed (a temporary file and go-diskfs's
	// build directory), and after writing the seed and the UEFI variable store.
	killedSeedTmp := file(seedName("sweep-seeding")+".tmp-1234", old)
	killedSeedWS := filepath.Join(d.dir, seedName("sweep-seeding")+".tmp-ws-5678")
	if err := os.MkdirAll(filepath.Join(killedSeedWS, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(killedSeedWS, old, old); err != nil {
		t.Fatal(err)
	}
	killedSeed := file(seedName("sweep-seeded"), old)
	killedVars := file(uefiVarsName("sweep-seeded"), old)
	// Killed mid-Destroy: the domain is gone, a console log and its rotation stay.
	killedLog := file(consoleLogName("sweep-gone"), old)
	killedRot := file(consoleLogName("sweep-gone")+".1", old)

	// A Create of another process, a moment ago: too young to be a leftover.
	young := overlay("sweep-young", time.Now())
	// A Create of this driver in flight on this name.
	inFlight := overlay("sweep-inflight", old)
	unlock := d.locks.Lock("sweep-inflight")
	// A domain that exists (Drover's), and one that is not Drover's: their files stay.
	spec := hypervisortest.ValidSpec(t, "sweep-live")
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	liveLog := file(consoleLogName(spec.Name), old)
	defineRaw(t, d, "sweep-foreign", "")
	foreignDisk := file(overlayName("sweep-foreign"), old)
	// Not named as Drover names its files.
	others := []string{
		file("notes.txt", old), file("sweep-x.qcow2.bak", old), file("a.b.qcow2", old),
		file("sweep-x.console.log.old", old),
	}
	if err := os.Mkdir(filepath.Join(d.dir, "sweep-dir.qcow2"), 0o755); err != nil {
		t.Fatal(err)
	}
	others = append(others, filepath.Join(d.dir, "sweep-dir.qcow2"))

	removed, err := d.Sweep(ctx)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	want := []string{killedLog, killedRot, killedOverlay, killedSeedTmp, killedSeedWS, killedSeed, killedVars}
	slices.Sort(want)
	slices.Sort(removed)
	if !slices.Equal(removed, want) {
		t.Errorf("Sweep removed:\nwant %q\ngot  %q", want, removed)
	}
	for _, p := range want {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Sweep: want %s gone, got %v", p, err)
		}
	}
	for _, p := range append([]string{young, inFlight, liveLog, foreignDisk}, others...) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("after Sweep: want %s untouched, got %v", p, err)
		}
	}

	// Once the Create in flight is over (it failed and its domain never came),
	// its overlay is a leftover like any other.
	unlock()
	removed, err = d.Sweep(ctx)
	if err != nil || !slices.Equal(removed, []string{inFlight}) {
		t.Errorf("second Sweep: want [%s] removed, got %q, %v", inFlight, removed, err)
	}
}

func TestSweepCanceled(t *testing.T) {
	d := newTestDriver(t)
	old := time.Now().Add(-2 * sweepMinAge)
	p := filepath.Join(d.dir, overlayName("sweep-cancel"))
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if removed, err := d.Sweep(ctx); err == nil || len(removed) > 0 {
		t.Errorf("Sweep with a canceled context: want an error and nothing removed, got %q, %v", removed, err)
	}
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("after a canceled Sweep: want %s kept, got %v", p, err)
	}
}

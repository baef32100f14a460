package qemu

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

func TestSeedBlockDrift(t *testing.T) {
	const seed = "/state/vm/seed.iso"
	tests := []struct {
		name   string
		blocks map[string]blockInfo
		want   []string
	}{
		{"as created", map[string]blockInfo{seedDrive: {Inserted: &insertedBlock{File: seed, RO: true}}}, nil},
		{"detached", map[string]blockInfo{diskDrive: {Inserted: &insertedBlock{File: "/d"}}},
			[]string{"seed detached: drive seed0 is gone from the running vm"}},
		{"medium ejected", map[string]blockInfo{seedDrive: {}},
			[]string{"seed detached: drive seed0 is gone from the running vm"}},
		{"swapped", map[string]blockInfo{seedDrive: {Inserted: &insertedBlock{File: "/tmp/x.iso", RO: true}}},
			[]string{"seed: created as /state/vm/seed.iso, now /tmp/x.iso"}},
		{"writable", map[string]blockInfo{seedDrive: {Inserted: &insertedBlock{File: seed}}},
			[]string{"seed: attached read-only, now writable"}},
	}
	for _, tt := range tests {
		if got := seedBlockDrift(seed, tt.blocks); !slices.Equal(got, tt.want) {
			t.Errorf("%s:\nwant %q\ngot  %q", tt.name, tt.want, got)
		}
	}
}

// A running VM's seed swapped on disk, then detached over QMP (which leaves QEMU's
// command line as it was), is reported as drift.
func TestSeedDriftLive(t *testing.T) {
	requireQEMU(t)
	imgs := testenv.Images(t)
	d := newTestDriver(t, t.TempDir())
	spec := hypervisortest.ValidSpec(t, "seed-drift")
	spec.Kernel, spec.Initrd, spec.Cmdline = "", "", ""
	spec.Disk = testenv.TinyDisk(t, imgs).Path
	spec.Seed = &hypervisor.Seed{MetaData: []byte(`{"instance-id": "seed-drift"}`), UserData: []byte("#cloud-config\n")}
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	driftOf := func() []string {
		vm, err := d.Get(t.Context(), spec.Name)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		return vm.Drift
	}
	if got := driftOf(); len(got) != 0 {
		t.Fatalf("drift as created: %q, want none", got)
	}
	p := d.paths(spec.Name)
	if err := os.WriteFile(p.seed, []byte("not the seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := driftOf(), []string{"seed " + p.seed + ": content swapped since it was created"}; !slices.Equal(got, want) {
		t.Errorf("drift after the seed file was overwritten:\nwant %q\ngot  %q", want, got)
	}

	// The seed cannot be unplugged from a running VM (q35's root bus has no hotplug),
	// so detaching it means restarting QEMU without it, as an operator would by hand.
	restartWith(t, spec.Name, func(args []string) []string {
		var out []string
		for i := 0; i < len(args); i++ {
			if i+1 < len(args) && (strings.Contains(args[i+1], "id="+seedDrive) || strings.Contains(args[i+1], "drive="+seedDrive)) {
				i++
				continue
			}
			out = append(out, args[i])
		}
		return out
	})
	got := driftOf()
	for _, want := range []string{"seed detached: drive seed0 is gone from the running vm", "device removed: virtio-blk-pci,drive=seed0"} {
		if !slices.Contains(got, want) {
			t.Errorf("drift after a restart without the seed: %q, want it to include %q", got, want)
		}
	}
}

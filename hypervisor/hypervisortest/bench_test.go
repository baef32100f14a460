package hypervisortest_test

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/hypervisor/qemu"
	"github.com/drover-dev/drover/testenv"
)

// BenchmarkCreateToHealthy is one VM from Create to its forwarded /healthz answering
// 200, for each real driver side by side in one run. Destroy is not timed.
//
//	go test -run '^$' -bench CreateToHealthy -benchtime 3x ./hypervisor/hypervisortest
func BenchmarkCreateToHealthy(b *testing.B) {
	imgs := testenv.Images(b)
	b.Run("qemu", func(b *testing.B) {
		for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
			if _, err := exec.LookPath(bin); err != nil {
				testenv.Unavailable(b, "%s not installed", bin)
			}
		}
		d, err := qemu.New(b.Context(), qemu.Config{StateDir: b.TempDir()}, hypervisortest.Logger(b))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		benchCreateToHealthy(b, d, imgs)
	})
	b.Run("libvirt", func(b *testing.B) {
		uri := testenv.Libvirt(b)
		d, err := libvirt.New(b.Context(), libvirt.Config{URI: uri, StateDir: reachableTempDir(b)}, hypervisortest.Logger(b))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		benchCreateToHealthy(b, d, imgs)
	})
}

func benchCreateToHealthy(b *testing.B, d hypervisortest.Driver, imgs testenv.GuestImages) {
	prefix := "bench" + strconv.FormatInt(time.Now().UnixNano()%1e8, 36)
	var i int
	for b.Loop() {
		i++
		name := prefix + "-" + strconv.Itoa(i)
		version := "v" + strconv.Itoa(i)
		spec := hypervisor.Spec{
			Name: name, CPUs: 1, MemoryMiB: 128,
			Kernel: imgs.Kernel.Path, Initrd: imgs.Initrd.Path, Cmdline: testenv.GuestCmdline(version),
			Network:   hypervisor.Network{Mode: hypervisor.NetworkUser},
			GuestPort: testenv.GuestPort,
			Meta:      hypervisor.Metadata{Service: "bench", SpecHash: "be9c4", Version: version},
		}
		vm, err := d.Create(b.Context(), spec)
		if err != nil {
			b.Fatalf("Create: %v", err)
		}
		herr := hypervisortest.WaitHealthy(b.Context(), vm, version, 2*time.Minute)
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		derr := d.Destroy(ctx, name)
		cancel()
		if herr != nil {
			b.Fatalf("%s: %v", name, herr)
		}
		if derr != nil {
			b.Fatalf("Destroy: %v", derr)
		}
		b.StartTimer()
	}
}

package hypervisortest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	forEachDriver(b, func(b *testing.B, d hypervisortest.Driver) { benchCreateToHealthy(b, d, imgs) })
}

// forEachDriver runs bench as a sub-benchmark on each real driver, on fresh state.
func forEachDriver(b *testing.B, bench func(b *testing.B, d hypervisortest.Driver)) {
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
		bench(b, d)
	})
	b.Run("libvirt", func(b *testing.B) {
		uri := testenv.Libvirt(b)
		d, err := libvirt.New(b.Context(), libvirt.Config{URI: uri, StateDir: reachableTempDir(b)}, hypervisortest.Logger(b))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		bench(b, d)
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

// BenchmarkCreateGoldenDiskSize is Create (call to running) of a VM whose golden disk
// is 10 GiB against one whose golden disk is 10 MiB (sparse raw files), alternating,
// for each real driver: a VM's disk is a linked clone, so the golden disk's size must
// not show. It reports the ratio of the two medians (target ≤ 1.1). Destroy is not timed.
//
//	go test -run '^$' -bench CreateGoldenDiskSize -benchtime 10x ./hypervisor/hypervisortest
func BenchmarkCreateGoldenDiskSize(b *testing.B) {
	imgs := testenv.Images(b)
	dir := reachableTempDir(b)
	small, big := sparseDisk(b, dir, "small.raw", 10<<20), sparseDisk(b, dir, "big.raw", 10<<30)
	forEachDriver(b, func(b *testing.B, d hypervisortest.Driver) { benchGoldenSize(b, d, imgs, small, big) })
}

func sparseDisk(b *testing.B, dir, name string, size int64) string {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	if err := f.Chmod(0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func benchGoldenSize(b *testing.B, d hypervisortest.Driver, imgs testenv.GuestImages, small, big string) {
	prefix := "benchg" + strconv.FormatInt(time.Now().UnixNano()%1e8, 36)
	var (
		i    int
		took [2][]time.Duration
	)
	for b.Loop() {
		i++
		which := i % 2
		golden := []string{small, big}[which]
		name := prefix + "-" + strconv.Itoa(i)
		spec := hypervisor.Spec{
			Name: name, CPUs: 1, MemoryMiB: 128,
			Kernel: imgs.Kernel.Path, Initrd: imgs.Initrd.Path, Cmdline: testenv.GuestCmdline("g"),
			Disk:      golden,
			Network:   hypervisor.Network{Mode: hypervisor.NetworkUser},
			GuestPort: testenv.GuestPort,
			Meta:      hypervisor.Metadata{Service: "bench", SpecHash: "be9c4", Version: "g"},
		}
		start := time.Now()
		vm, err := d.Create(b.Context(), spec)
		elapsed := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("Create over %s: %v", golden, err)
		}
		if vm.State != hypervisor.StateRunning {
			b.Fatalf("Create over %s: state %s, want running", golden, vm.State)
		}
		took[which] = append(took[which], elapsed)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		derr := d.Destroy(ctx, name)
		cancel()
		if derr != nil {
			b.Fatalf("Destroy: %v", derr)
		}
		b.StartTimer()
	}
	if len(took[0]) == 0 || len(took[1]) == 0 {
		b.Logf("run at least 2 iterations (-benchtime 10x) to compare the two sizes")
		return
	}
	// Medians: the first create of a run pays for warming caches, and whichever size
	// it happens to be would look slower by the mean.
	median := func(k int) float64 {
		d := slices.Clone(took[k])
		slices.Sort(d)
		return float64(d[len(d)/2])
	}
	b.ReportMetric(median(0)/1e6, "ms-10MiB")
	b.ReportMetric(median(1)/1e6, "ms-10GiB")
	b.ReportMetric(median(1)/median(0), "ratio")
}

package hypervisor_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

func TestProbeImageAndCreateOverlay(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			golden := hypervisortest.MakeGolden(t, format)
			got, err := hypervisor.ProbeImage(ctx, "qemu-img", golden)
			if err != nil || got != format {
				t.Fatalf("hypervisor.ProbeImage(%s): want %s, got %q, %v", golden, format, got, err)
			}
			overlay := filepath.Join(dir, "overlay-"+format+".qcow2")
			if err := hypervisor.CreateOverlay(ctx, "qemu-img", overlay, golden, got); err != nil {
				t.Fatalf("CreateOverlay: %v", err)
			}
			// The overlay is not a golden image: it names its backing file.
			_, err = hypervisor.ProbeImage(ctx, "qemu-img", overlay)
			if err == nil || !strings.Contains(err.Error(), "self-contained") || !strings.Contains(err.Error(), golden) {
				t.Fatalf("hypervisor.ProbeImage(overlay): want a self-contained error naming %s, got %v", golden, err)
			}
		})
	}
}

func TestQEMUImgErrors(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Unavailable(t, "qemu-img not installed (install qemu-utils)")
	}
	ctx := t.Context()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.qcow2")
	tests := []struct {
		name    string
		run     func() error
		wantErr []string
	}{
		{"probe a missing image", func() error { _, err := hypervisor.ProbeImage(ctx, "qemu-img", missing); return err },
			[]string{"inspect disk image " + missing, "qemu-img info", "No such file"}},
		{"probe with a missing binary", func() error {
			_, err := hypervisor.ProbeImage(ctx, filepath.Join(dir, "no-qemu-img"), missing)
			return err
		}, []string{"inspect disk image " + missing, "qemu-img info"}},
		{"overlay over a missing image", func() error {
			return hypervisor.CreateOverlay(ctx, "qemu-img", filepath.Join(dir, "o.qcow2"), missing, "qcow2")
		}, []string{"create overlay", "over " + missing, "qemu-img create"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("want an error containing %q, got %v", want, err)
				}
			}
		})
	}
}

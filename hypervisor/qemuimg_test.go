package hypervisor_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

func requireQEMUImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		testenv.Unavailable(t, "qemu-img not installed (install qemu-utils)")
	}
}

func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// hostSecret is a host file an attacker's image would like the guest to read.
func hostSecret(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(p, []byte(strings.Repeat("CONSUL_HTTP_TOKEN=s3cr3t\n", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectGoldenAcceptsRawAndQCOW2(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for _, format := range []string{hypervisor.FormatRaw, hypervisor.FormatQCOW2} {
		t.Run(format, func(t *testing.T) {
			golden := hypervisortest.MakeGolden(t, format)
			got, err := hypervisor.InspectGolden(ctx, "qemu-img", golden)
			if err != nil || got != format {
				t.Fatalf("InspectGolden(%s): want %s, got %q, %v", golden, format, got, err)
			}
			overlay := filepath.Join(dir, "overlay-"+format+".qcow2")
			if err := hypervisor.CreateOverlay(ctx, "qemu-img", overlay, golden, got, 0); err != nil {
				t.Fatalf("CreateOverlay: %v", err)
			}
			// The overlay is not a golden image: it names its backing file.
			_, err = hypervisor.InspectGolden(ctx, "qemu-img", overlay)
			if !errors.Is(err, hypervisor.ErrUnsafeImage) || !strings.Contains(err.Error(), "self-contained") || !strings.Contains(err.Error(), golden) {
				t.Fatalf("InspectGolden(overlay): want ErrUnsafeImage, self-contained, naming %s, got %v", golden, err)
			}
		})
	}
}

// Images that would hand the guest a host file's bytes, or make qemu-img open one.
func TestInspectGoldenRefusesImagesNamingOtherFiles(t *testing.T) {
	requireQEMUImg(t)
	secret := hostSecret(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		make    func(p string)
		wantErr []string
	}{
		{"vmdk descriptor with a FLAT extent on a host file", func(p string) {
			desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
				"RW 200 FLAT \"" + secret + "\" 0\n\nddb.adapterType = \"ide\"\n"
			if err := os.WriteFile(p, []byte(desc), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"vmdk", "raw or qcow2"}},
		{"vmdk made by qemu-img, flat", func(p string) {
			qemuImg(t, "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", p, "1M")
		}, []string{"vmdk"}},
		{"vmdk sparse", func(p string) { qemuImg(t, "create", "-q", "-f", "vmdk", p, "1M") }, []string{"vmdk"}},
		{"qcow2 with an external data file on a host file", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", p, "1M")
		}, []string{"external data file", secret}},
		{"qcow2 with an external data file, not raw", func(p string) {
			df := filepath.Join(dir, "data-not-raw")
			qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+df, p, "1M")
		}, []string{"external data file", "data-not-raw"}},
		{"qcow2 with a data file that is a FIFO", func(p string) {
			// qemu-img would block opening it; Drover must never open it at all.
			df := filepath.Join(dir, "df-regular")
			qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+df+",data_file_raw=on", p, "1M")
			qemuImg(t, "amend", "-q", "-f", "qcow2", "-o", "data_file="+fifo, p)
		}, []string{"external data file", fifo}},
		{"qcow2 with a backing file", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, p)
		}, []string{"backing file", secret}},
		{"qcow2 version 2 with a backing file", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-F", "raw", "-b", secret, p)
		}, []string{"backing file", secret}},
		{"qed with a backing file", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qed", "-F", "raw", "-b", secret, p)
		}, []string{"qed"}},
		{"vdi", func(p string) { qemuImg(t, "create", "-q", "-f", "vdi", p, "1M") }, []string{"vdi"}},
		{"vhdx", func(p string) { qemuImg(t, "create", "-q", "-f", "vhdx", p, "1M") }, []string{"vhdx"}},
		{"vpc", func(p string) { qemuImg(t, "create", "-q", "-f", "vpc", p, "1M") }, []string{"vpc"}},
		{"parallels", func(p string) { qemuImg(t, "create", "-q", "-f", "parallels", p, "1M") }, []string{"parallels"}},
		{"luks", func(p string) {
			qemuImg(t, "create", "-q", "--object", "secret,id=s0,data=x", "-f", "luks", "-o", "key-secret=s0,iter-time=10", p, "1M")
		}, []string{"luks"}},
		{"a FIFO as the golden image", func(p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"not a regular file"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "golden-"+string(rune('a'+i)))
			tt.make(p)
			// A hang would end in a deadline error, not in ErrUnsafeImage.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			format, err := hypervisor.InspectGolden(ctx, "qemu-img", p)
			if !errors.Is(err, hypervisor.ErrUnsafeImage) {
				t.Fatalf("InspectGolden: want ErrUnsafeImage, got format %q, %v", format, err)
			}
			for _, want := range append(tt.wantErr, p) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("InspectGolden: want the error to contain %q, got %v", want, err)
				}
			}
		})
	}
}

// A file whose header no format claims is raw to Drover, and stated as raw, so even a
// descriptor-looking file QEMU would read differently gives the guest only its bytes.
func TestInspectGoldenRawLookalike(t *testing.T) {
	requireQEMUImg(t)
	p := filepath.Join(t.TempDir(), "not-quite-vmdk")
	// vmdk_probe wants "version=" right after comments and blank lines.
	if err := os.WriteFile(p, []byte("# Disk DescriptorFile\nCID=1\nversion=1\nRW 1 FLAT \"/etc/shadow\" 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := hypervisor.InspectGolden(t.Context(), "qemu-img", p)
	if err != nil || got != hypervisor.FormatRaw {
		t.Fatalf("InspectGolden: want raw, got %q, %v", got, err)
	}
}

func TestCreateOverlayRefusesOtherFormats(t *testing.T) {
	dir := t.TempDir()
	err := hypervisor.CreateOverlay(t.Context(), "qemu-img", filepath.Join(dir, "o.qcow2"), filepath.Join(dir, "g.vmdk"), "vmdk", 0)
	if !errors.Is(err, hypervisor.ErrUnsafeImage) {
		t.Fatalf("CreateOverlay over vmdk: want ErrUnsafeImage, got %v", err)
	}
}

// fakeQEMUImg is a shell script standing in for qemu-img.
func fakeQEMUImg(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu-img")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQEMUImgIsBounded(t *testing.T) {
	golden := filepath.Join(t.TempDir(), "golden.raw")
	if err := os.WriteFile(golden, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DROVER_TEST_CANARY", "must-not-leak")

	t.Run("memory, cpu and environment", func(t *testing.T) {
		fake := fakeQEMUImg(t, `echo "as=$(ulimit -v) cpu=$(ulimit -t) canary=$DROVER_TEST_CANARY" >&2; exit 1`)
		_, err := hypervisor.InspectGolden(t.Context(), fake, golden)
		if err == nil || !strings.Contains(err.Error(), "as=1048576 cpu=30 canary=\n") && !strings.HasSuffix(err.Error(), "as=1048576 cpu=30 canary=") {
			t.Fatalf("want qemu-img run with 1 GiB address space, 30 s CPU and no inherited environment, got %v", err)
		}
	})
	t.Run("time", func(t *testing.T) {
		fake := fakeQEMUImg(t, `exec sleep 600`)
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		_, err := hypervisor.InspectGolden(ctx, fake, golden)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a deadline error from a qemu-img that never ends, got %v", err)
		}
	})
	t.Run("output", func(t *testing.T) {
		fake := fakeQEMUImg(t, `exec yes '{"format":"raw"}'`)
		_, err := hypervisor.InspectGolden(t.Context(), fake, golden)
		if err == nil || !strings.Contains(err.Error(), "output larger than") {
			t.Fatalf("want an output-too-large error from a qemu-img that never stops writing, got %v", err)
		}
	})
}

func TestQEMUImgErrors(t *testing.T) {
	requireQEMUImg(t)
	ctx := t.Context()
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.qcow2")
	present := hypervisortest.MakeGolden(t, hypervisor.FormatQCOW2)
	tests := []struct {
		name    string
		run     func() error
		wantErr []string
	}{
		{"inspect a missing image", func() error { _, err := hypervisor.InspectGolden(ctx, "qemu-img", missing); return err },
			[]string{"inspect disk image " + missing, "no such file"}},
		{"inspect with a missing binary", func() error {
			_, err := hypervisor.InspectGolden(ctx, filepath.Join(dir, "no-qemu-img"), present)
			return err
		}, []string{"inspect disk image " + present, "qemu-img info"}},
		{"overlay over a missing image", func() error {
			return hypervisor.CreateOverlay(ctx, "qemu-img", filepath.Join(dir, "o.qcow2"), missing, "qcow2", 0)
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

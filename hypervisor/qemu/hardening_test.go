package qemu

import (
	"bytes"
	"encoding/base64"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

// One VM for the two things a VM's QEMU must not take from Drover: its environment
// (a Consul token read from /proc/<pid>/environ by anything of the same user) and
// unbounded disk for its console.
func TestQEMUHardening(t *testing.T) {
	const secret = "secret-3d9f1c0e-consul-token"
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	t.Setenv("DROVER_TEST_INHERITED", "must-not-pass")
	d := newTestDriver(t, t.TempDir())
	// A small ring, so the test fills it quickly: QEMU parses a QMP write slowly.
	d.consoleSize = 16 << 10
	spec := realSpec(t, "harden-1", "h-1")
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	vm, err := d.Create(t.Context(), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	p := d.paths(spec.Name)
	pid := processAlive(p)
	if pid == 0 {
		t.Fatalf("no qemu process for %s", spec.Name)
	}

	t.Run("EnvironmentScrubbed", func(t *testing.T) {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte("CONSUL_HTTP_TOKEN")) {
			t.Errorf("qemu pid %d environment: want no CONSUL_HTTP_TOKEN, got %q", pid, env)
		}
		for _, kv := range env {
			name, _, _ := strings.Cut(kv, "=")
			if name != "PATH" && name != "LANG" {
				t.Errorf("qemu pid %d environment: want only PATH and LANG, got %q", pid, kv)
			}
		}
	})

	if err := hypervisortest.WaitHealthy(t.Context(), vm, "h-1", 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("ConsoleCapped", func(t *testing.T) {
		// The guest has booted, so its console has its boot lines.
		got, err := readConsole(t.Context(), p.qmp, d.consoleSize)
		if err != nil {
			t.Fatalf("console of %s: %v", spec.Name, err)
		}
		if !bytes.Contains(got, []byte("drover-guest: serving version h-1")) {
			t.Errorf("console of a booted guest: want its boot lines, got %d bytes ending %q", len(got), tail(string(got)))
		}
		// A guest printing without end: three times the ring goes through the
		// console device, as the serial port's output would.
		var written []byte
		var cmds []qmp.Command
		for i := range 3 * d.consoleSize / 2048 {
			chunk := bytes.Repeat([]byte{byte('a' + i%26)}, 2048)
			written = append(written, chunk...)
			cmds = append(cmds, qmp.Command{
				Execute: "ringbuf-write",
				Args:    map[string]any{"device": consoleDevice, "data": base64.StdEncoding.EncodeToString(chunk), "format": "base64"},
			})
		}
		if _, err := qmpExec(t.Context(), p.qmp, time.Minute, cmds...); err != nil {
			t.Fatalf("write to the console device: %v", err)
		}
		got, err = readConsole(t.Context(), p.qmp, d.consoleSize)
		if err != nil {
			t.Fatal(err)
		}
		if want := written[len(written)-d.consoleSize:]; !bytes.Equal(got, want) {
			t.Errorf("console after %d bytes of output: want the last %d bytes kept, got %d bytes", len(written), d.consoleSize, len(got))
		}
		entries, err := os.ReadDir(p.dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Size() > int64(d.consoleSize) && e.Name() != "disk.qcow2" {
				t.Errorf("state entry file %s: %d bytes, want none bigger than the console cap %d", e.Name(), fi.Size(), d.consoleSize)
			}
		}
	})

	t.Run("ShutdownSavesConsole", func(t *testing.T) {
		if err := d.Shutdown(t.Context(), spec.Name, time.Minute); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		fi, err := os.Stat(p.console)
		if err != nil {
			t.Fatalf("console.log after Shutdown: %v", err)
		}
		if fi.Size() > int64(d.consoleSize) {
			t.Errorf("console.log: want at most %d bytes, got %d", d.consoleSize, fi.Size())
		}
		if fi.Mode().Perm()&0o004 != 0 {
			t.Errorf("console.log mode %v: want it not world-readable", fi.Mode())
		}
	})
}

// TestOverlayPrivate: a VM's overlay holds what its guest writes; only Drover's user
// (which runs QEMU with this driver) may read it.
func TestOverlayPrivate(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	spec := realSpec(t, "overlay-1", "o-1")
	spec.Disk = hypervisortest.MakeGolden(t, "qcow2")
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	fi, err := os.Stat(d.paths(spec.Name).overlay)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("overlay mode %v: want readable by its owner only", fi.Mode())
	}
}

package qemu

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

// fakeQMP serves QMP on a unix socket with canned replies to query-status and
// query-block: the only way to show QEMU's I/O-error states without filling a host
// filesystem. It speaks only what qmpRun sends.
func fakeQMP(t *testing.T, status, ioStatus string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	replies := map[string]any{
		"qmp_capabilities": map[string]any{},
		"query-status":     map[string]any{"status": status, "running": false, "singlestep": false},
		"query-block": []any{
			map[string]any{"device": "virtio0", "io-status": ioStatus, "locked": false, "removable": false},
		},
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}`)
				// Commands come as a JSON stream, not one per line, as QEMU reads them.
				dec := json.NewDecoder(c)
				for {
					var cmd struct {
						Execute string `json:"execute"`
					}
					if dec.Decode(&cmd) != nil {
						return
					}
					out, _ := json.Marshal(map[string]any{"return": replies[cmd.Execute]})
					fmt.Fprintf(c, "%s\n", out)
				}
			}()
		}
	}()
	return sock
}

// A guest stopped by a failed disk write (the host filesystem under its overlay is
// full) is reported as paused-ioerror, which the reconciler reports rather than
// destroying and recreating the VM onto the same full disk.
func TestQMPStateIOError(t *testing.T) {
	tests := []struct {
		status, ioStatus string
		want             hypervisor.State
	}{
		{"io-error", "nospace", hypervisor.StatePausedIOError},
		{"paused", "nospace", hypervisor.StatePausedIOError},
		{"paused", "failed", hypervisor.StatePausedIOError},
		{"paused", "ok", hypervisor.StatePaused},
		{"paused", "", hypervisor.StatePaused},
		{"running", "ok", hypervisor.StateRunning},
	}
	d := &Driver{log: hypervisortest.Logger(t)}
	for _, tt := range tests {
		sock := fakeQMP(t, tt.status, tt.ioStatus)
		if got := d.qmpState(t.Context(), sock); got != tt.want {
			t.Errorf("qmpState with status %q, disk io-status %q: want %s, got %s", tt.status, tt.ioStatus, tt.want, got)
		}
	}
}

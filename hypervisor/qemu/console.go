package qemu

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/drover-dev/drover/internal/atomicfile"
)

// consoleLogSize caps what is kept of a VM's serial console: QEMU holds the last
// consoleLogSize bytes the guest printed in a ring in its own memory, so the cap holds
// with no Drover running, and a guest that prints forever costs the host nothing more.
// QEMU wants a power of two.
const consoleLogSize = 1 << 20

// consoleDevice is the id of the console's ring buffer chardev.
const consoleDevice = "console0"

// consoleReadChunk is what one ringbuf-read asks for: its base64 reply must fit the
// 64 KiB line go-qemu's monitor reads responses in.
const consoleReadChunk = 32 << 10

// readConsole takes what the guest printed out of QEMU's ring of size bytes, oldest
// first. Reading empties the ring.
func readConsole(ctx context.Context, socket string, size int) ([]byte, error) {
	cmds := make([]qmp.Command, (size+consoleReadChunk-1)/consoleReadChunk)
	for i := range cmds {
		cmds[i] = qmp.Command{
			Execute: "ringbuf-read",
			Args:    map[string]any{"device": consoleDevice, "size": consoleReadChunk, "format": "base64"},
		}
	}
	outs, err := qmpExec(ctx, socket, qmpTimeout, cmds...)
	if err != nil {
		return nil, fmt.Errorf("read console: %w", err)
	}
	var data []byte
	for _, out := range outs {
		var resp struct {
			Return string `json:"return"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			return nil, fmt.Errorf("read console: %w", err)
		}
		chunk, err := base64.StdEncoding.DecodeString(resp.Return)
		if err != nil {
			return nil, fmt.Errorf("read console: %w", err)
		}
		data = append(data, chunk...)
	}
	return data, nil
}

// saveConsole writes the console ring to the VM's console.log before its QEMU goes, so
// a VM Drover stopped keeps its last words for the operator. The file is at most the
// ring's size, and is replaced, never appended to.
func (d *Driver) saveConsole(ctx context.Context, p vmPaths) error {
	data, err := readConsole(ctx, p.qmp, d.consoleSize)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p.console, data, 0o640); err != nil {
		return fmt.Errorf("save console: %w", err)
	}
	return nil
}

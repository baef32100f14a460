package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/drover-dev/drover/hypervisor/cidata"
)

// seedDrift compares a VM's cloud-init seed with what Create attached: the file still
// holds what was written (not swapped on disk), and, while QEMU runs, its drive is
// still attached, to that file, read-only (QMP device_del, blockdev-reopen and the like
// leave the command line as it was, so the arguments alone cannot tell).
func (d *Driver) seedDrift(ctx context.Context, p vmPaths, rec record, pid int) []string {
	cw := rec.CreatedWith
	if cw == nil || cw.Seed == "" {
		return nil
	}
	var out []string
	switch sum, err := cidata.Digest(cw.Seed); {
	case errors.Is(err, os.ErrNotExist):
		out = append(out, "seed removed: "+cw.Seed)
	case err != nil:
		out = append(out, fmt.Sprintf("seed %s: cannot be read to compare: %v", cw.Seed, err))
	case cw.SeedSHA256 != "" && sum != cw.SeedSHA256: // "": killed before it was recorded
		out = append(out, fmt.Sprintf("seed %s: content swapped since it was created", cw.Seed))
	}
	if pid == 0 {
		return out
	}
	blocks, err := queryBlock(ctx, p.qmp)
	if err != nil {
		d.log.Debug("vm drives unknown", "vm", rec.Name, "err", err)
		return out
	}
	return append(out, seedBlockDrift(cw.Seed, blocks)...)
}

// seedBlockDrift compares the running VM's seed drive with the file Create attached.
func seedBlockDrift(seed string, blocks map[string]blockInfo) []string {
	b, ok := blocks[seedDrive]
	if !ok || b.Inserted == nil {
		return []string{"seed detached: drive " + seedDrive + " is gone from the running vm"}
	}
	var out []string
	if b.Inserted.File != seed {
		out = append(out, fmt.Sprintf("seed: created as %s, now %s", seed, orNone(b.Inserted.File)))
	}
	if !b.Inserted.RO {
		out = append(out, "seed: attached read-only, now writable")
	}
	return out
}

// blockInfo is one entry of QMP's query-block.
type blockInfo struct {
	Device   string         `json:"device"`
	QDev     string         `json:"qdev"` // the QOM path of the device the drive is attached to
	IOStatus string         `json:"io-status"`
	Inserted *insertedBlock `json:"inserted"`
}

type insertedBlock struct {
	File string `json:"file"`
	RO   bool   `json:"ro"`
}

// queryBlock is QMP's query-block by drive id.
func queryBlock(ctx context.Context, socket string) (map[string]blockInfo, error) {
	outs, err := qmpRun(ctx, socket, qmpTimeout, "query-block")
	if err != nil {
		return nil, err
	}
	var resp struct {
		Return []blockInfo `json:"return"`
	}
	if err := json.Unmarshal(outs[0], &resp); err != nil {
		return nil, fmt.Errorf("qmp query-block: %w", err)
	}
	m := make(map[string]blockInfo, len(resp.Return))
	for _, b := range resp.Return {
		m[b.Device] = b
	}
	return m, nil
}

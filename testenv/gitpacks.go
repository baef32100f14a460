package testenv

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// packCounter counts the packs a git server sends, that is the object transfers:
// upload-pack runs its uploadpack.packObjectsHook (a protected setting, so given on
// the command line or in GIT_CONFIG_PARAMETERS) only when it sends objects, not when
// it only lists refs. The hook runs pack-objects, passes its pack on, and notes the
// pack's size and header (which holds the object count).
type packCounter struct {
	hook, count string
}

// Transfer is one pack a test server sent.
type Transfer struct {
	Objects int   // objects in the pack
	Bytes   int64 // the pack's size
}

func newPackCounter(t testing.TB) packCounter {
	t.Helper()
	dir := t.TempDir()
	c := packCounter{hook: filepath.Join(dir, "pack-objects-hook"), count: filepath.Join(dir, "packs")}
	script := `#!/bin/sh
out=$(mktemp '` + dir + `/pack.XXXXXX') || exit 1
"$@" > "$out"
status=$?
cat "$out"
echo "$(wc -c < "$out") $(od -An -tx1 -N12 "$out" | tr -d ' \n')" >> '` + c.count + `'
rm -f "$out"
exit $status
`
	if err := os.WriteFile(c.hook, []byte(script), 0o755); err != nil {
		t.Fatalf("git server: write pack-objects hook: %v", err)
	}
	return c
}

// configParameters is GIT_CONFIG_PARAMETERS for the processes of a server: the hook,
// and safe.directory because the test owns the repositories it serves.
func (c packCounter) configParameters() string {
	return "GIT_CONFIG_PARAMETERS='uploadpack.packobjectshook'='" + c.hook + "' 'safe.directory'='*'"
}

// transfers are the packs sent so far, oldest first.
func (c packCounter) transfers() []Transfer {
	data, err := os.ReadFile(c.count)
	if err != nil {
		return nil
	}
	var out []Transfer
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var tr Transfer
		tr.Bytes, _ = strconv.ParseInt(fields[0], 10, 64)
		// "PACK", version, object count: 4 bytes each, big-endian.
		if len(fields) > 1 {
			if hdr, err := hex.DecodeString(fields[1]); err == nil && len(hdr) == 12 && string(hdr[:4]) == "PACK" {
				tr.Objects = int(hdr[8])<<24 | int(hdr[9])<<16 | int(hdr[10])<<8 | int(hdr[11])
			}
		}
		out = append(out, tr)
	}
	return out
}

// packs is how many packs were sent so far.
func (c packCounter) packs() int { return len(c.transfers()) }

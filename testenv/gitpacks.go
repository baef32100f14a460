package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// packCounter counts the packs a git server sends, that is the object transfers:
// upload-pack runs its uploadpack.packObjectsHook (a protected setting, so given on
// the command line or in GIT_CONFIG_PARAMETERS) only when it sends objects, not when
// it only lists refs. The hook appends a line to a file and runs pack-objects.
type packCounter struct {
	hook, count string
}

func newPackCounter(t testing.TB) packCounter {
	t.Helper()
	dir := t.TempDir()
	c := packCounter{hook: filepath.Join(dir, "pack-objects-hook"), count: filepath.Join(dir, "packs")}
	script := "#!/bin/sh\necho pack >> '" + c.count + "'\nexec \"$@\"\n"
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

// packs is how many packs were sent so far.
func (c packCounter) packs() int {
	data, err := os.ReadFile(c.count)
	if err != nil {
		return 0
	}
	return bytes.Count(data, []byte("\n"))
}

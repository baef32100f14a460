package testenv

import (
	"os"
	"testing"
)

func TestTinyDiskBuild(t *testing.T) {
	imgs := Images(t)
	f := TinyDisk(t, imgs)
	if out := os.Getenv("TINY_OUT"); out != "" {
		data, _ := os.ReadFile(f.Path)
		os.WriteFile(out, data, 0o644)
	}
}

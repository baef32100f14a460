package testenv

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// TestNewcWriterReadByGNUCpio checks the archive against an independent reader: GNU
// cpio must list every entry with its type, owner and symlink target.
func TestNewcWriterReadByGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		Unavailable(t, "cpio (install cpio): %v", err)
	}
	var buf bytes.Buffer
	w := &newcWriter{w: &buf}
	for _, err := range []error{
		w.dir("bin"),
		w.file("bin/busybox", 0o755, []byte("not really busybox")),
		w.symlink("bin/sh", "busybox"),
		w.dir("dev"),
		w.charDev("dev/console", 0o600, 5, 1),
		w.file("/init", 0o755, []byte("#!/bin/sh\n")), // leading slash is dropped
		w.file("empty", 0o644, nil),
		w.close(),
	} {
		if err != nil {
			t.Fatalf("write archive: %v", err)
		}
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", buf.Len())
	}
	cmd := exec.Command("cpio", "-t", "-v", "--numeric-uid-gid", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []struct{ mode, name string }{
		{"drwxr-xr-x", "bin"},
		{"-rwxr-xr-x", "bin/busybox"},
		{"lrwxrwxrwx", "bin/sh -> busybox"},
		{"drwxr-xr-x", "dev"},
		{"crw-------", "dev/console"},
		{"-rwxr-xr-x", "init"},
		{"-rw-r--r--", "empty"},
	}
	if len(lines) != len(want) {
		t.Fatalf("cpio -t: want %d entries, got %d:\n%s", len(want), len(lines), out)
	}
	for i, w := range want {
		fields := strings.Fields(lines[i])
		if fields[0] != w.mode || !strings.HasSuffix(lines[i], " "+w.name) || fields[2] != "0" || fields[3] != "0" {
			t.Errorf("entry %d: want %s root:root %q, got %q", i, w.mode, w.name, lines[i])
		}
	}
}

func TestNewcWriterRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "/", "a\x00b"} {
		w := &newcWriter{w: &bytes.Buffer{}}
		if err := w.file(name, 0o644, nil); err == nil {
			t.Errorf("file(%q): want an error, got nil", name)
		}
	}
}

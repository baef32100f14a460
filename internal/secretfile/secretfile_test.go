package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want, wantErr string
	}{
		{"token", write("ok", "  s3cret-token\n"), "s3cret-token", ""},
		{"max size", write("max", strings.Repeat("a", MaxSize)), strings.Repeat("a", MaxSize), ""},
		{"too large", write("big", strings.Repeat("a", MaxSize+1)), "", "larger than"},
		{"empty", write("empty", " \n"), "", "empty"},
		{"two lines", write("two", "a\nb\n"), "", "one line"},
		{"fifo", fifo, "", "not a regular file"},
		{"directory", dir, "", "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(tc.path)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("Read: got %.20q, %v; want %.20q, nil", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("Read: got %.20q, %v; want an error naming %s with %q", got, err, tc.path, tc.wantErr)
			}
			if strings.Contains(err.Error(), "aaaa") || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the content: %v", err)
			}
		})
	}
	if _, err := Read(fifo); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Read(fifo): got %v, want ErrNotRegular", err)
	}
}

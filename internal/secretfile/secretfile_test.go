package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadLine(t *testing.T) {
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
	for _, tt := range []struct {
		name, path, want, wantErr string
	}{
		{"token with newline", write("tok", "  s3cret-token\n"), "s3cret-token", ""},
		{"empty", write("empty", " \n\n"), "", "empty"},
		{"two lines", write("two", "a\nb\n"), "", "want one line"},
		{"too large", write("big", strings.Repeat("x", MaxSize+1)), "", "want at most"},
		{"directory", dir, "", "not a regular file"},
		{"fifo without writer", fifo, "", "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var got string
			var err error
			go func() { got, err = ReadLine(tt.path); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("ReadLine(%s) blocked", tt.path)
			}
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("ReadLine = %q, %v; want %q, nil", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ReadLine = %q, %v; want an error containing %q", got, err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the file %s", err, tt.path)
			}
			if tt.name != "missing" && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q is not ErrInvalid", err)
			}
		})
	}
}

func TestReadNeverShowsContent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(p, []byte("hunter2-line1\nhunter2-line2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadLine(p)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("ReadLine error %v: want an error that does not quote the file", err)
	}
	data, err := Read(p, 10)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Read with a 10-byte bound = %q, %v: want an error that does not quote the file", data, err)
	}
}

package hypervisor

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOpenableRW(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dev")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"read-write file", file, true},
		{"missing", filepath.Join(dir, "nope"), false},
		{"directory", dir, false},
	}
	for _, tt := range tests {
		if got := openableRW(tt.path); got != tt.want {
			t.Errorf("openableRW(%s): want %v, got %v", tt.name, tt.want, got)
		}
	}
}

// Package testenv provides the real components Drover's tests, benchmarks and demo run
// against: test golden images built from Debian packages, a Consul dev agent on loopback
// ports, libvirtd and virtlogd, and git repositories. Everything built is cached under
// CacheDir and rebuilt only when missing, so repeated runs are cheap and idempotent.
//
// Helpers that take a testing.TB skip with the reason when a component is missing
// locally, but fail instead when CI is set: CI installs everything and skips nothing.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot is the directory holding Drover's go.mod, found from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && isDroverModule(data) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repo root: no drover go.mod above the working directory")
		}
		dir = parent
	}
}

func isDroverModule(gomod []byte) bool {
	const want = "module github.com/drover-dev/drover\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// CacheDir is where built components are kept: $DROVER_TESTENV_CACHE, else .cache in the
// repository root. It is created if missing.
func CacheDir() (string, error) {
	dir := os.Getenv("DROVER_TESTENV_CACHE")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	return dir, nil
}

// Unavailable stops a test whose component cannot be had: a skip with the reason
// locally, a failure in CI (CI is set), where everything must run.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("required test component unavailable in CI: %s", msg)
	}
	t.Skipf("skipping: %s (run `make test` to install it)", msg)
}

// StateDir is a fresh directory for a test's Drover state that libvirt's QEMU, which runs
// as another user (libvirt-qemu on Debian), can traverse: t.TempDir alone is 0700.
func StateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("state dir: %v", err)
		}
	}
	return dir
}

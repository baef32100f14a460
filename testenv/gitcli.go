package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Git runs the real git in dir with a configuration of its own (no host or user
// configuration), a fixed identity and extra environment env, and returns its
// trimmed standard output. It fails the test on error, and skips it (fails in CI)
// when git is not installed.
func Git(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := runGit(t, dir, env, nil, args...)
	if err != nil {
		t.Fatalf("git %s in %s: %v", strings.Join(args, " "), dir, err)
	}
	return out
}

func runGit(t testing.TB, dir string, env []string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Unavailable(t, "git is not installed: %v", err)
	}
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// gitEnv keeps git away from the host's configuration, with a fixed identity and
// dates so that commits do not depend on the machine or the clock.
func gitEnv() []string {
	home := filepath.Join(os.TempDir(), "drover-testenv-git-home")
	_ = os.MkdirAll(home, 0o700)
	return append(os.Environ(),
		"HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Drover Test", "GIT_AUTHOR_EMAIL=test@drover.invalid",
		"GIT_COMMITTER_NAME=Drover Test", "GIT_COMMITTER_EMAIL=test@drover.invalid",
		"GIT_AUTHOR_DATE=2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2024-01-01T00:00:00Z",
		"LC_ALL=C",
	)
}

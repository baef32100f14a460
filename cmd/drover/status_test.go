package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/drover-dev/drover/internal/redact"
)

// TestListenOffLoopbackNeedsToken: /status on a network address shows the plan and
// errors to anyone who connects, so it needs a token; loopback stays open.
func TestListenOffLoopbackNeedsToken(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		listen, token string
		wantErr       bool
	}{
		{"127.0.0.1:7070", "", false},
		{"[::1]:7070", "", false},
		{"localhost:7070", "", false},
		{"", "", false}, // disabled
		{"0.0.0.0:7070", "", true},
		{":7070", "", true},
		{"[::]:7070", "", true},
		{"192.0.2.10:7070", "", true},
		{"0.0.0.0:7070", tokenFile, false},
	}
	for _, tt := range tests {
		o := defaultOptions(t)
		o.repo, o.listen, o.listenTokenFile = "x", tt.listen, tt.token
		err := o.validate(true)
		if (err != nil) != tt.wantErr {
			t.Errorf("--listen %q --listen-token-file %q: err %v, want error %v", tt.listen, tt.token, err, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "--listen-token-file") {
			t.Errorf("--listen %q: error %q does not name the fix --listen-token-file", tt.listen, err)
		}
	}
	code, _, stderr := runCLI(t, "run", "--repo", "x", "--listen", "0.0.0.0:7070")
	if code != exitUsage || !strings.Contains(stderr, "--listen-token-file") {
		t.Errorf("run --listen 0.0.0.0:7070: exit %d, stderr %q; want %d naming --listen-token-file", code, stderr, exitUsage)
	}
}

// defaultOptions are run's options with every flag at its default.
func defaultOptions(t *testing.T) options {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	o.register(fs, true)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := readToken(write("ok", "  abc\n")); err != nil || tok != "abc" {
		t.Errorf("readToken: %q %v, want abc", tok, err)
	}
	for name, content := range map[string]string{"empty": "\n", "two-lines": "a\nb\n"} {
		if _, err := readToken(write(name, content)); err == nil {
			t.Errorf("readToken(%s): want an error", name)
		}
	}
	// A FIFO nobody writes would block start-up for ever with a plain read.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("readToken(fifo): %v, want a refusal", err)
	}
	if _, err := readToken(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("readToken(missing): %v, want an error naming the file", err)
	}
}

// TestLogsMaskRepoCredentials: whichever package logs the repository URL or its
// password, in a message, an attribute or an error, the line shows neither.
func TestLogsMaskRepoCredentials(t *testing.T) {
	const repo = "https://ci:tok-9f8e7d6c@git.example/ops/fleet.git"
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := newLogger(&buf, format, "debug", redact.NewSet(redact.URLSecrets(repo)...))
		log.Info("fetch "+repo+" failed", "repo", repo, "err", errors.New("auth with tok-9f8e7d6c refused"))
		log.With("url", repo).WithGroup("g").Debug("x", "why", slog.GroupValue(slog.String("u", repo)), "list", []string{repo})
		if out := buf.String(); strings.Contains(out, "tok-9f8e7d6c") || !strings.Contains(out, "git.example/ops/fleet.git") {
			t.Errorf("%s log: want the password masked and the host kept, got:\n%s", format, out)
		}
	}
	if got := redact.URLSecrets("https://ghp_abcdefghijklmnop1234@github.com/o/r.git"); len(got) != 1 {
		t.Errorf("token as user name: secrets %q, want the token", got)
	}
	for _, repo := range []string{"ssh://git@host/r.git", "https://git@host/r.git", "/srv/fleet", "git@host:r.git"} {
		if got := redact.URLSecrets(repo); len(got) != 0 {
			t.Errorf("redact.URLSecrets(%s) = %q, want none", repo, got)
		}
	}
}

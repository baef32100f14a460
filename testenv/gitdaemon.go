package testenv

import (
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// GitDaemon is a real `git daemon` serving the repositories under one directory over
// git:// on 127.0.0.1, in a process apart from the test's, so that what the test
// process spends is the client's alone.
type GitDaemon struct {
	// URL is git://127.0.0.1:PORT, without a trailing slash.
	URL string
}

// RepoURL is the git:// URL of the repository at path name under the root.
func (d *GitDaemon) RepoURL(name string) string { return d.URL + "/" + name }

// ServeGitDaemon starts git daemon on root until the test ends. It runs in a process
// group of its own, so that stopping it stops the upload-pack children it forks too.
func ServeGitDaemon(t testing.TB, root string) *GitDaemon {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Unavailable(t, "git is not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("git daemon: pick a port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--informative-errors",
		"--listen=127.0.0.1", "--port="+strconv.Itoa(port), "--base-path="+root, root)
	cmd.Env = gitEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("git daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("git daemon on %s: not listening after 10s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &GitDaemon{URL: "git://" + addr}
}

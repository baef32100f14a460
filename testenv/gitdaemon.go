package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// GitDaemon is the real `git daemon` serving the repositories in one directory over
// git:// on 127.0.0.1, read-only, until the test ends. It runs in its own process
// group, so the upload-pack children it forks die with it.
type GitDaemon struct {
	// URL is git://127.0.0.1:PORT; a repository is URL + "/" + its directory name.
	URL string

	packs  packCounter
	stderr *lockedBuffer
}

// ServeGitDaemon starts git daemon on a free port for the repositories under root.
func ServeGitDaemon(t testing.TB, root string) *GitDaemon {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Unavailable(t, "git is not installed: %v", err)
	}
	d := &GitDaemon{packs: newPackCounter(t), stderr: &lockedBuffer{}}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ { // another process may take the port first
		port, err := freePort()
		if err != nil {
			t.Fatalf("git daemon: %v", err)
		}
		cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--informative-errors", "--verbose",
			"--listen=127.0.0.1", "--port="+strconv.Itoa(port), "--base-path="+root, root)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", d.packs.configParameters())
		cmd.Stderr = d.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("git daemon: start: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = waitListening(addr, exited, 10*time.Second); lastErr == nil {
			t.Cleanup(stop)
			d.URL = "git://" + addr
			return d
		}
		stop()
	}
	t.Fatalf("git daemon: %v\n%s", lastErr, d.stderr.String())
	return nil
}

// RepoURL is the URL of the repository in directory name under root.
func (d *GitDaemon) RepoURL(name string) string { return d.URL + "/" + name }

// Fetches is how many object transfers (packs) the daemon has sent.
func (d *GitDaemon) Fetches() int { return d.packs.packs() }

// freePort is a TCP port on 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts connections, the server exits, or timeout.
func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a server's stderr for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
	stderr *SyncBuffer
}

// ServeGitDaemon starts git daemon on a free port for the repositories under root.
func ServeGitDaemon(t testing.TB, root string) *GitDaemon {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		Unavailable(t, "git is not installed: %v", err)
	}
	d := &GitDaemon{packs: newPackCounter(t), stderr: &SyncBuffer{}}
	addr := serveOnFreePort(t, "git daemon", d.stderr, func(port int) *exec.Cmd {
		cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--informative-errors", "--verbose",
			"--listen=127.0.0.1", "--port="+strconv.Itoa(port), "--base-path="+root, root)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", d.packs.configParameters())
		return cmd
	})
	d.URL = "git://" + addr
	return d
}

// RepoURL is the URL of the repository in directory name under root.
func (d *GitDaemon) RepoURL(name string) string { return d.URL + "/" + name }

// Fetches is how many object transfers (packs) the daemon has sent.
func (d *GitDaemon) Fetches() int { return d.packs.packs() }

// Transfers are the packs the server has sent, oldest first, with their object
// counts and sizes.
func (d *GitDaemon) Transfers() []Transfer { return d.packs.transfers() }

// freePort is a TCP port on 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// serveOnFreePort starts the server command(port) makes on a free port of 127.0.0.1,
// in a process group of its own so that the children it forks die with it, and
// returns its address once it accepts connections. It is killed, by process group,
// when the test ends. A port taken by another process meanwhile means another try.
func serveOnFreePort(t testing.TB, name string, log *SyncBuffer, command func(port int) *exec.Cmd) string {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cmd := command(port)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: start: %v", name, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			// sshd's sessions leave the group (setsid): let them end, reaped by
			// the server, then kill what is left by PID and the group.
			pid := cmd.Process.Pid
			deadline := time.Now().Add(5 * time.Second)
			for len(escaped(pid)) > 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			for _, child := range escaped(pid) {
				_ = syscall.Kill(child, syscall.SIGKILL)
			}
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = waitListening(addr, exited, 10*time.Second); lastErr == nil {
			t.Cleanup(stop)
			return addr
		}
		stop()
	}
	t.Fatalf("%s: %v\n%s", name, lastErr, log.String())
	return ""
}

// escaped are the PIDs of the live processes below pid (a process group leader) that
// have left its group, read from /proc.
func escaped(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	pgid := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 3 || fields[0] == "Z" {
			continue // exited, only waiting for its parent to reap it
		}
		ppid, err1 := strconv.Atoi(fields[1])
		group, err2 := strconv.Atoi(fields[2])
		if err1 == nil && err2 == nil {
			children[ppid] = append(children[ppid], p)
			pgid[p] = group
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			if pgid[c] != pid {
				out = append(out, c)
			}
			queue = append(queue, c)
		}
	}
	return out
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

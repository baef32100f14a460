package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processAlive returns the pid of the VM's QEMU if it is running, else 0. The pid file
// alone is not proof: after QEMU died the pid may belong to anything, so the process
// must also be QEMU started with this VM's pid file. A zombie (QEMU killed while its
// reaper is slow, or absent in a container) is dead.
func processAlive(p vmPaths) int {
	data, err := os.ReadFile(p.pid)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	if !isVMProcess(pid, p) {
		return 0
	}
	return pid
}

func isVMProcess(pid int, p vmPaths) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which may itself hold ") ".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	if st := stat[i+2]; st == 'Z' || st == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte("\x00-pidfile\x00"+p.pid+"\x00"))
}

// killProcess kills the VM's QEMU if it runs and waits until it is gone.
func killProcess(ctx context.Context, p vmPaths) error {
	pid := processAlive(p)
	if pid == 0 {
		return nil
	}
	start := procStart(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill qemu pid %d: %w", pid, err)
	}
	return waitGone(ctx, p, pid, start, killWait)
}

// killWait bounds the wait for a killed QEMU to vanish: the kernel frees its memory
// first, which takes a moment for a big guest.
const killWait = 30 * time.Second

// stopProcess asks QEMU to quit, which it does at once whatever the guest is doing,
// and kills it if it does not.
func (d *Driver) stopProcess(ctx context.Context, p vmPaths, log *slog.Logger) error {
	pid := processAlive(p)
	if pid == 0 {
		return nil
	}
	start := procStart(pid)
	if _, err := qmpRun(ctx, p.qmp, qmpTimeout, "quit"); err != nil {
		log.Debug("qmp quit failed; killing qemu", "err", err)
	} else if err := waitGone(ctx, p, pid, start, quitWait); err == nil {
		return nil
	}
	return killProcess(ctx, p)
}

// quitWait is how long QEMU gets to exit after acknowledging quit.
const quitWait = 5 * time.Second

// waitGone polls until the VM's QEMU, process pid started at start, is gone with all
// its threads, ctx ends or limit passes.
func waitGone(ctx context.Context, p vmPaths, pid int, start string, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if processAlive(p) == 0 && !lingering(pid, start) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for qemu pid %d to exit: %w", pid, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("wait for qemu pid %d to exit: still running after %v", pid, limit)
		case <-tick.C:
		}
	}
}

// procStart is the start time of process pid (field 22 of its stat, in clock ticks since
// boot), which tells it from a later process given the same pid; "" if it is gone.
func procStart(pid int) string {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ""
	}
	// After the command: state is field 3, start time field 22.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// lingering reports whether a thread of process pid, started at start, still runs. A
// killed QEMU's main thread turns zombie before its other threads have exited, and
// until the last of them has, its files stay open: removing its overlay would not yet
// give back the space it fills.
func lingering(pid int, start string) bool {
	if pid == 0 || start == "" || procStart(pid) != start {
		return false
	}
	task := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := os.ReadDir(task)
	if err != nil {
		return false
	}
	for _, tid := range tids {
		stat, err := os.ReadFile(task + "/" + tid.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			continue
		}
		if st := stat[i+2]; st != 'Z' && st != 'X' {
			return true
		}
	}
	return false
}

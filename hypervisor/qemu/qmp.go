package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/drover-dev/drover/hypervisor"
)

// qmpTimeout bounds one QMP conversation. QEMU answers in milliseconds; one that does
// not (stopped, wedged) must not hold up a whole List.
const qmpTimeout = 3 * time.Second

// qmpRun connects to a QMP socket, runs the commands (without arguments) in order and
// returns their raw responses.
func qmpRun(ctx context.Context, socket string, timeout time.Duration, commands ...string) ([][]byte, error) {
	cmds := make([]qmp.Command, len(commands))
	for i, c := range commands {
		cmds[i] = qmp.Command{Execute: c}
	}
	return qmpExec(ctx, socket, timeout, cmds...)
}

// qmpExec connects to a QMP socket, runs the commands in order and returns their raw
// responses. go-qemu's SocketMonitor takes no context and sets no deadlines, so the
// conversation runs in its own goroutine that owns the monitor: on timeout the caller
// returns, and the goroutine ends when QEMU answers or dies and closes the socket.
func qmpExec(ctx context.Context, socket string, timeout time.Duration, commands ...qmp.Command) ([][]byte, error) {
	type result struct {
		out [][]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		mon, err := qmp.NewSocketMonitor("unix", socket, timeout)
		if err != nil {
			done <- result{err: fmt.Errorf("qmp connect %s: %w", socket, err)}
			return
		}
		defer mon.Disconnect()
		if err := mon.Connect(); err != nil {
			done <- result{err: fmt.Errorf("qmp handshake %s: %w", socket, err)}
			return
		}
		var outs [][]byte
		for _, c := range commands {
			cmd, err := json.Marshal(c)
			if err != nil {
				done <- result{err: fmt.Errorf("qmp %s: %w", c.Execute, err)}
				return
			}
			out, err := mon.Run(cmd)
			if err != nil {
				done <- result{err: fmt.Errorf("qmp %s: %w", c.Execute, err)}
				return
			}
			outs = append(outs, out)
		}
		done <- result{out: outs}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.out, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s on %s: %w", names(commands), socket, ctx.Err())
	case <-timer.C:
		return nil, fmt.Errorf("qmp %s on %s: no answer within %v", names(commands), socket, timeout)
	}
}

func names(commands []qmp.Command) string {
	out := make([]string, len(commands))
	for i, c := range commands {
		out[i] = c.Execute
	}
	return strings.Join(out, ",")
}

// qmpState asks a running QEMU what its guest is doing.
func (d *Driver) qmpState(ctx context.Context, socket string) hypervisor.State {
	outs, err := qmpRun(ctx, socket, qmpTimeout, "query-status")
	if err != nil {
		d.log.Debug("vm status unknown", "socket", socket, "err", err)
		return hypervisor.StateUnknown
	}
	var resp struct {
		Return struct {
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := json.Unmarshal(outs[0], &resp); err != nil {
		d.log.Debug("vm status unreadable", "socket", socket, "err", err)
		return hypervisor.StateUnknown
	}
	st := mapStatus(resp.Return.Status)
	if st == hypervisor.StatePaused && d.diskFailed(ctx, socket) {
		// Paused by hand after the I/O error, or by a QEMU that reports the
		// pause without the io-error status: the disk's own state still says.
		st = hypervisor.StatePausedIOError
	}
	return st
}

// diskFailed reports whether any of the VM's disks holds an I/O error (io-status
// "failed" or "nospace"); QEMU keeps it until the guest is resumed.
func (d *Driver) diskFailed(ctx context.Context, socket string) bool {
	outs, err := qmpRun(ctx, socket, qmpTimeout, "query-block")
	if err != nil {
		d.log.Debug("vm disk status unknown", "socket", socket, "err", err)
		return false
	}
	var resp struct {
		Return []struct {
			IOStatus string `json:"io-status"`
		} `json:"return"`
	}
	if err := json.Unmarshal(outs[0], &resp); err != nil {
		d.log.Debug("vm disk status unreadable", "socket", socket, "err", err)
		return false
	}
	for _, b := range resp.Return {
		if b.IOStatus != "" && b.IOStatus != "ok" {
			return true
		}
	}
	return false
}

// mapStatus maps QMP's RunState (qapi/run-state.json) to a hypervisor.State.
func mapStatus(status string) hypervisor.State {
	switch status {
	case "running":
		return hypervisor.StateRunning
	case "shutdown":
		// The guest powered off; -no-shutdown keeps QEMU until Drover quits it.
		return hypervisor.StateShutoff
	case "prelaunch", "inmigrate", "finish-migrate", "restore-vm", "colo":
		return hypervisor.StateStarting
	case "io-error":
		// A disk write failed (most often: the host filesystem is full) and the
		// guest was stopped so it loses nothing; it resumes once that is fixed.
		return hypervisor.StatePausedIOError
	case "paused", "suspended", "debug", "save-vm", "postmigrate", "watchdog":
		return hypervisor.StatePaused
	case "internal-error", "guest-panicked":
		return hypervisor.StateCrashed
	default:
		return hypervisor.StateUnknown
	}
}

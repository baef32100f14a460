package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/drover-dev/drover/hypervisor"
)

// qmpTimeout bounds one QMP conversation. QEMU answers in milliseconds; one that does
// not (stopped, wedged) must not hold up a whole List.
const qmpTimeout = 3 * time.Second

// qmpRun connects to a QMP socket, runs the commands in order and returns their raw
// responses. go-qemu's SocketMonitor takes no context and sets no deadlines, so the
// conversation runs in its own goroutine that owns the monitor: on timeout the caller
// returns, and the goroutine ends when QEMU answers or dies and closes the socket.
func qmpRun(ctx context.Context, socket string, timeout time.Duration, commands ...string) ([][]byte, error) {
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
			cmd, err := json.Marshal(qmp.Command{Execute: c})
			if err != nil {
				done <- result{err: fmt.Errorf("qmp %s: %w", c, err)}
				return
			}
			out, err := mon.Run(cmd)
			if err != nil {
				done <- result{err: fmt.Errorf("qmp %s: %w", c, err)}
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
		return nil, fmt.Errorf("qmp %v on %s: %w", commands, socket, ctx.Err())
	case <-timer.C:
		return nil, fmt.Errorf("qmp %v on %s: no answer within %v", commands, socket, timeout)
	}
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
	return mapStatus(resp.Return.Status)
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
	case "paused", "suspended", "debug", "save-vm", "postmigrate", "watchdog", "io-error":
		return hypervisor.StatePaused
	case "internal-error", "guest-panicked":
		return hypervisor.StateCrashed
	default:
		return hypervisor.StateUnknown
	}
}

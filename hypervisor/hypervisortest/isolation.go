package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// userNetworkIsolated: a guest on user networking must not open connections to the
// host. QEMU's user network maps 10.0.2.2 to the host's loopback, where Consul's API
// and Drover's status endpoint listen; a commit's guest must not reach them. The
// forwarded service port keeps working: the outcome is read through it.
func (s *suite) userNetworkIsolated(t *testing.T) {
	if !s.h.RunsGuests {
		t.Skip("guests do not boot on this driver")
	}
	env := s.h.New(t)
	ctx := t.Context()
	host := listenHost(t)

	spec := s.spec(s.name("r"), "r-1")
	spec.Cmdline += " " + s.h.Images.Reach("10.0.2.2:"+strconv.Itoa(host.Port()))
	DestroyAtEnd(t, env.Driver, spec.Name)
	vm, err := env.Driver.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := waitHealthy(ctx, vm, spec.Meta.Version, s.h.BootTimeout); err != nil {
		t.Fatalf("forwarded service port: %v", err)
	}
	got, err := waitReach(ctx, vm, s.h.BootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got != "unreachable" || host.Accepted() > 0 {
		t.Errorf("guest on user networking connecting to the host's 127.0.0.1:%d as 10.0.2.2: want \"unreachable\" and no connection accepted, got %q and %d accepted", host.Port(), got, host.Accepted())
	}
}

// reachBanner is the line the suite's host listener sends on every connection it
// accepts; a guest told to reach it reports "reached" only once it read this line,
// so a connection QEMU's user network merely half-opened does not count.
const reachBanner = "drover-reach"

// hostListener is a TCP listener on the host's 127.0.0.1 that counts the connections
// it accepts and sends each the line reachBanner before closing it.
type hostListener struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
}

// listenHost starts a hostListener on a free port of 127.0.0.1, closed when t ends.
func listenHost(t testing.TB) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on 127.0.0.1: %v", err)
	}
	h := &hostListener{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.accepted++
			h.mu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, reachBanner+"\n")
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return h
}

// Port is the listener's port on 127.0.0.1.
func (h *hostListener) Port() int { return h.ln.Addr().(*net.TCPAddr).Port }

// Accepted is how many connections the listener has accepted.
func (h *hostListener) Accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted
}

// waitReach polls the guest's GET /reach, through its forwarded port, until the guest
// has an outcome to report.
func waitReach(ctx context.Context, vm hypervisor.VM, limit time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	url := "http://" + vm.Address + ":" + strconv.Itoa(vm.Port) + "/reach"
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", fmt.Errorf("GET %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			got := strings.TrimSpace(string(body))
			if resp.StatusCode == http.StatusOK {
				return got, nil
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else if !errors.Is(err, context.Canceled) {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("GET %s: want an outcome within %v, last got %s", url, limit, last)
		case <-tick.C:
		}
	}
}

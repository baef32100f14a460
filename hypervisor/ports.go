package hypervisor

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// FreeLocalPort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// kernel picks it, so two calls rarely collide, but nothing holds it: whoever binds
// it next (QEMU's hostfwd) must be ready to find it taken and ask again.
func FreeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port on 127.0.0.1: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PortInUse reports whether something is bound to 127.0.0.1:port right now. QEMU
// reports a taken hostfwd port only as text; this check does not depend on its wording.
func PortInUse(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// HostPorts holds the loopback ports handed to Creates still in flight: the kernel
// does not know about a port that was picked but not yet bound by QEMU, so two
// parallel Creates could otherwise be handed the same one. The zero value is ready to
// use; a HostPorts must not be copied after first use.
type HostPorts struct {
	mu   sync.Mutex
	held map[int]bool
}

// reserveTries bounds how often Reserve asks pick for a port before it gives up.
const reserveTries = 20

// Reserve asks pick for a port that no Create in flight holds and holds it until
// Release.
func (h *HostPorts) Reserve(pick func() (int, error)) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for range reserveTries {
		port, err := pick()
		if err != nil {
			return 0, fmt.Errorf("pick a host port: %w", err)
		}
		if !h.held[port] {
			if h.held == nil {
				h.held = map[int]bool{}
			}
			h.held[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("pick a host port: %d picks were all held by vms being created", reserveTries)
}

// Release frees ports a Create reserved. Once it returns, QEMU holds the port the
// Create kept, and the others were never bound.
func (h *HostPorts) Release(ports ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range ports {
		delete(h.held, p)
	}
}

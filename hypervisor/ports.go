package hypervisor

import (
	"fmt"
	"net"
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

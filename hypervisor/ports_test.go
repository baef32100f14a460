package hypervisor

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeLocalPortCanBeBound(t *testing.T) {
	port, err := FreeLocalPort()
	if err != nil {
		t.Fatalf("FreeLocalPort: %v", err)
	}
	if port < 1 || port > 65535 {
		t.Fatalf("FreeLocalPort: want a port in 1-65535, got %d", port)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("bind the port FreeLocalPort returned: %v", err)
	}
	l.Close()
}

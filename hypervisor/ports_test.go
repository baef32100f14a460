package hypervisor

import (
	"errors"
	"net"
	"strconv"
	"strings"
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

func TestHostPortsSkipsPortsInFlight(t *testing.T) {
	var h HostPorts
	picks := []int{41000, 41000, 41001}
	pick := func() (int, error) {
		p := picks[0]
		picks = picks[1:]
		return p, nil
	}
	first, err := h.Reserve(pick)
	if err != nil || first != 41000 {
		t.Fatalf("first Reserve: want 41000, got %d, %v", first, err)
	}
	second, err := h.Reserve(pick)
	if err != nil || second != 41001 {
		t.Fatalf("second Reserve: want 41001 (41000 is in flight), got %d, %v", second, err)
	}
	h.Release(first, second)
	if len(h.held) != 0 {
		t.Fatalf("after Release: want nothing held, got %v", h.held)
	}

	if _, err := h.Reserve(func() (int, error) { return 41002, nil }); err != nil {
		t.Fatalf("Reserve 41002: %v", err)
	}
	_, err = h.Reserve(func() (int, error) { return 41002, nil })
	if err == nil || !strings.Contains(err.Error(), "picks were all held") {
		t.Fatalf("Reserve when every pick is in flight: want an error saying so, got %v", err)
	}
}

func TestHostPortsPickError(t *testing.T) {
	var h HostPorts
	_, err := h.Reserve(func() (int, error) { return 0, errors.New("no ports today") })
	if err == nil || !strings.Contains(err.Error(), "pick a host port: no ports today") {
		t.Fatalf("Reserve with a failing pick: want the pick's error, got %v", err)
	}
	if len(h.held) != 0 {
		t.Fatalf("after a failed Reserve: want nothing held, got %v", h.held)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if !PortInUse(port) {
		t.Errorf("PortInUse(%d) while bound: want true, got false", port)
	}
	l.Close()
	if PortInUse(port) {
		t.Errorf("PortInUse(%d) after close: want false, got true", port)
	}
}

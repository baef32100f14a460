package hypervisor_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/testenv"
)

// TestNeighbourTable, in a network namespace of the test's own: a guest's address is
// found by its MAC in the neighbour table, and a static address the table shows the
// MAC away from is drift.
func TestNeighbourTable(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{}, func(t *testing.T, ns *testenv.NetNS) {
		const mac = "52:54:00:aa:bb:cc"
		if got, err := hypervisor.NeighbourAddress(mac); err != nil || got != "" {
			t.Fatalf("empty table: want no address, got %q, %v", got, err)
		}
		br, err := netlink.LinkByName(ns.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		hw, _ := net.ParseMAC(mac)
		if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP("198.18.0.77"), HardwareAddr: hw}); err != nil {
			t.Fatal(err)
		}
		if got, err := hypervisor.NeighbourAddress(strings.ToUpper(mac)); err != nil || got != "198.18.0.77" {
			t.Errorf("want 198.18.0.77 for %s, got %q, %v", mac, got, err)
		}
		if got := hypervisor.StaticAddressDrift(mac, "198.18.0.77/24"); got != "" {
			t.Errorf("address where the table has it: want no drift, got %q", got)
		}
		want := "address: created with 198.18.0.10, the guest (mac " + mac + ") now answers at 198.18.0.77"
		if got := hypervisor.StaticAddressDrift(mac, "198.18.0.10/24"); got != want {
			t.Errorf("drift:\nwant %q\ngot  %q", want, got)
		}
		if got := hypervisor.StaticAddressDrift("52:54:00:00:00:01", "198.18.0.10/24"); got != "" {
			t.Errorf("a mac the table has not seen: want no drift, got %q", got)
		}
	})
}

func TestCheckBridge(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{}, func(t *testing.T, ns *testenv.NetNS) {
		if err := hypervisor.CheckBridge(ns.Bridge); err != nil {
			t.Errorf("existing bridge: %v", err)
		}
		for name, says := range map[string]string{"drnone0": "create it", "lo": "not a bridge"} {
			err := hypervisor.CheckBridge(name)
			if !errors.Is(err, hypervisor.ErrNoBridge) || !strings.Contains(err.Error(), says) {
				t.Errorf("%s: want ErrNoBridge saying %q, got %v", name, says, err)
			}
		}
	})
}

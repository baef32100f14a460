package testenv

import (
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestNetNSIsolated: the child runs in a namespace that is not the host's, holding the
// bridge and nothing that leads out; the host's own namespace is left as it was.
func TestNetNSIsolated(t *testing.T) {
	hostLinks := linkNames(t)
	InNetNS(t, NetNSOptions{}, func(t *testing.T, ns *NetNS) {
		self, _ := os.Readlink("/proc/self/ns/net")
		host, _ := os.Readlink("/proc/1/ns/net")
		if self == host {
			t.Fatalf("child in the host's network namespace %s", host)
		}
		got := linkNames(t)
		if len(got) != 2 || !got["lo"] || !got[NetBridge] {
			t.Errorf("links: want lo and %s only, got %v", NetBridge, got)
		}
		br, err := netlink.LinkByName(ns.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != netip.PrefixFrom(NetGateway, 24).String() {
			t.Errorf("bridge addresses: want %s/24, got %v", NetGateway, addrs)
		}
		if err := checkIsolated(); err != nil {
			t.Error(err)
		}
	})
	if InNetNSChild() {
		return
	}
	if after := linkNames(t); after[NetBridge] || len(after) != len(hostLinks) {
		t.Errorf("host links changed: before %v, after %v", hostLinks, after)
	}
}

func linkNames(t *testing.T) map[string]bool {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, l := range links {
		out[l.Attrs().Name] = true
	}
	return out
}

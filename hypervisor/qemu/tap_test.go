package qemu

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/testenv"
)

func TestTapName(t *testing.T) {
	a, b := tapName("/state/a/qemu", "web-1"), tapName("/state/b/qemu", "web-1")
	if len(a) > 15 || !strings.HasPrefix(a, tapPrefix) {
		t.Fatalf("tap name %q: want %s… within IFNAMSIZ-1 (15)", a, tapPrefix)
	}
	if a == b || a[:6] == b[:6] {
		t.Errorf("two state directories share a tap prefix: %s, %s", a, b)
	}
	if a != tapName("/state/a/qemu", "web-1") {
		t.Error("tap name not stable")
	}
}

func TestBridgedArgs(t *testing.T) {
	spec := hypervisor.Spec{GuestPort: 8080}
	rec := record{Tap: "dr0123abcdef01", MAC: "52:54:00:01:02:03"}
	got := netArgs(spec, rec)
	want := []string{"-netdev", "tap,id=net0,ifname=dr0123abcdef01,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:01:02:03,romfile="}
	if !slices.Equal(got, want) {
		t.Errorf("bridged nic:\nwant %q\ngot  %q", want, got)
	}
}

// TestTapLifecycle, inside a network namespace of the test's own: a bridged VM gets a
// tap on the bridge, Destroy removes it, a tap moved to another bridge is drift, and
// Sweep removes only this driver's taps that no entry names.
func TestTapLifecycle(t *testing.T) {
	testenv.InNetNS(t, testenv.NetNSOptions{}, func(t *testing.T, ns *testenv.NetNS) {
		d := newTestDriver(t, t.TempDir())
		spec := realSpec(t, "tap-vm", "1")
		spec.Network = hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: ns.Bridge, Address: "198.18.0.10/24"}
		vm, err := d.Create(t.Context(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if vm.Address != "198.18.0.10" || vm.Port != spec.GuestPort || vm.Meta.MAC != hypervisor.MACFor("tap-vm") {
			t.Errorf("vm: want 198.18.0.10:%d mac %s, got %s:%d mac %s", spec.GuestPort, hypervisor.MACFor("tap-vm"), vm.Address, vm.Port, vm.Meta.MAC)
		}
		tap := tapName(d.root, "tap-vm")
		link, err := netlink.LinkByName(tap)
		if err != nil {
			t.Fatalf("tap %s: %v", tap, err)
		}
		if br, _ := netlink.LinkByName(ns.Bridge); link.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("tap %s not on %s", tap, ns.Bridge)
		}

		// Moved to another bridge by hand: drift.
		other := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "drbr9"}}
		if err := netlink.LinkAdd(other); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetMaster(link, other); err != nil {
			t.Fatal(err)
		}
		got, err := d.Get(t.Context(), "tap-vm")
		if err != nil {
			t.Fatal(err)
		}
		want := "network: created on bridge " + ns.Bridge + ", now on bridge drbr9 (tap " + tap + ")"
		if !slices.Contains(got.Drift, want) {
			t.Errorf("drift: want %q, got %q", want, got.Drift)
		}

		// A leftover tap of this driver (a Create killed after making it, its entry
		// gone) and one of another state directory.
		stray, foreign := tapName(d.root, "gone-vm"), tapName("/elsewhere/qemu", "gone-vm")
		for _, name := range []string{stray, foreign} {
			if err := makeTap(name, ns.Bridge); err != nil {
				t.Fatal(err)
			}
		}
		d.now = func() time.Time { return time.Now().Add(time.Hour) }
		removed, err := d.Sweep(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(removed, []string{"tap " + stray}) {
			t.Errorf("sweep removed %q, want only tap %s", removed, stray)
		}
		for name, want := range map[string]bool{tap: true, stray: false, foreign: true} {
			if _, err := netlink.LinkByName(name); (err == nil) != want {
				t.Errorf("after sweep: tap %s exists=%v, want %v", name, err == nil, want)
			}
		}

		if err := d.Destroy(t.Context(), "tap-vm"); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(tap); err == nil {
			t.Errorf("tap %s still exists after Destroy", tap)
		}
	})
}

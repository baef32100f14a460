package sources

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func bridged(extra string) string {
	return svc("network: {mode: bridge, bridge: br0" + extra + "}")
}

func TestParseStaticNetwork(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Network
	}{
		{"range", bridged(", addresses: 198.18.0.10-198.18.0.99, prefix: 24, gateway: 198.18.0.1, dns: [198.18.0.1, 198.18.0.2]"),
			Network{Mode: "bridge", Bridge: "br0", Addresses: "198.18.0.10-198.18.0.99", Prefix: 24, Gateway: "198.18.0.1", DNS: []string{"198.18.0.1", "198.18.0.2"}}},
		{"cidr takes its prefix", bridged(", addresses: 198.18.0.64/26"),
			Network{Mode: "bridge", Bridge: "br0", Addresses: "198.18.0.64/26", Prefix: 26}},
		{"cidr inside a wider prefix", bridged(", addresses: 198.18.0.64/26, prefix: 24, gateway: 198.18.0.1"),
			Network{Mode: "bridge", Bridge: "br0", Addresses: "198.18.0.64/26", Prefix: 24, Gateway: "198.18.0.1"}},
		{"one address", svc("replicas: 0", "network: {mode: network, network: default, addresses: 198.18.0.7, prefix: 24}"),
			Network{Mode: "network", Network: "default", Addresses: "198.18.0.7", Prefix: 24}},
		{"dhcp", bridged(""), Network{Mode: "bridge", Bridge: "br0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tc.input))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got := f.Services[0].Network
			if got.Mode != tc.want.Mode || got.Bridge != tc.want.Bridge || got.Network != tc.want.Network ||
				got.Addresses != tc.want.Addresses || got.Prefix != tc.want.Prefix || got.Gateway != tc.want.Gateway ||
				!slices.Equal(got.DNS, tc.want.DNS) {
				t.Errorf("network:\nwant %+v\ngot  %+v", tc.want, got)
			}
		})
	}
}

func TestParseStaticNetworkErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"malformed range", bridged(", addresses: 198.18.0.10-198.18.0.x, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: range "198.18.0.10-198.18.0.x": last address: ParseAddr("198.18.0.x"): unexpected character (at "x")`},
		{"reversed range", bridged(", addresses: 198.18.0.99-198.18.0.10, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: range "198.18.0.99-198.18.0.10": last address 198.18.0.10 is before the first 198.18.0.99`},
		{"not an address", bridged(", addresses: web, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: "web": want a range such as 198.18.0.10-198.18.0.99 or a CIDR such as 198.18.0.0/26: ParseAddr("web"): unable to parse IP`},
		{"ipv6 range", bridged(", addresses: 2001:db8::1-2001:db8::9, prefix: 64"),
			`f.yaml:8:53: service web: network.addresses: range "2001:db8::1-2001:db8::9": first address: 2001:db8::1 is not IPv4`},
		{"ipv6 cidr", bridged(", addresses: 2001:db8::/120"),
			`f.yaml:8:53: service web: network.addresses: cidr "2001:db8::/120": want IPv4`},
		{"cidr with host bits", bridged(", addresses: 198.18.0.5/24"),
			`f.yaml:8:53: service web: network.addresses: cidr "198.18.0.5/24" has host bits set: did you mean 198.18.0.0/24?`},
		{"range without prefix", bridged(", addresses: 198.18.0.10-198.18.0.20"),
			`f.yaml:8:14: service web: network.prefix is required with a range of addresses (the guest's prefix length, such as 24)`},
		{"pool outside the prefix", bridged(", addresses: 198.18.0.250-198.18.1.10, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: 198.18.0.250-198.18.1.10 is not inside one /24 (198.18.0.0/24): every guest address must be in the guest's own subnet`},
		{"pool holds the broadcast address", bridged(", addresses: 198.18.0.200-198.18.0.255, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: 198.18.0.200-198.18.0.255 holds 198.18.0.255, the broadcast address of 198.18.0.0/24, which no guest can use`},
		{"pool holds the network address", bridged(", addresses: 198.18.0.0-198.18.0.9, prefix: 24"),
			`f.yaml:8:53: service web: network.addresses: 198.18.0.0-198.18.0.9 holds 198.18.0.0, the network address of 198.18.0.0/24, which no guest can use`},
		{"pool too big", bridged(", addresses: 10.0.0.0/8"),
			`f.yaml:8:53: service web: network.addresses: 10.0.0.1-10.255.255.254 holds 16777214 addresses, more than the 65536 allowed`},
		{"prefix out of range", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 33"),
			`f.yaml:8:86: service web: network.prefix must be between 1 and 32, got 33`},
		{"gateway in the pool", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, gateway: 198.18.0.15"),
			`f.yaml:8:99: service web: network.gateway 198.18.0.15 is inside network.addresses 198.18.0.10-198.18.0.20: a guest could be given the gateway's address`},
		{"gateway off the subnet", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, gateway: 198.18.1.1"),
			`f.yaml:8:99: service web: network.gateway 198.18.1.1 is not in the guests' subnet 198.18.0.0/24`},
		{"gateway not an address", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, gateway: router"),
			`f.yaml:8:99: service web: network.gateway: want an IPv4 address, got "router"`},
		{"dns not a list", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, dns: 198.18.0.1"),
			`f.yaml:8:95: service web: network.dns: want a list of IPv4 addresses, got string "198.18.0.1"`},
		{"dns entry bad", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, dns: [198.18.0.1, ns1]"),
			`f.yaml:8:108: service web: network.dns: want an IPv4 address, got "ns1"`},
		{"too many dns", bridged(", addresses: 198.18.0.10-198.18.0.20, prefix: 24, dns: [198.18.0.1, 198.18.0.2, 198.18.0.3, 198.18.0.4]"),
			`f.yaml:8:95: service web: network.dns: 4 name servers, more than the 3 a resolver uses`},
		{"gateway without a pool", bridged(", gateway: 198.18.0.1"),
			`f.yaml:8:42: service web: network.gateway is only allowed with network.addresses (static addressing); without it the guest uses DHCP`},
		{"pool on user networking", svc("network: {addresses: 198.18.0.10-198.18.0.20, prefix: 24}"),
			`f.yaml:8:15: service web: network.addresses is only allowed with mode bridge or network, not user`},
		{"pool too small for blue-green", svc("replicas: 2", "network: {mode: bridge, bridge: br0, addresses: 198.18.0.10-198.18.0.12, prefix: 24}"),
			`f.yaml:9:14: service web: network.addresses 198.18.0.10-198.18.0.12 holds 3 addresses, fewer than the 4 a rollout needs (2 × replicas under blue-green)`},
		{"pool too small for rolling", svc("replicas: 3", "network: {mode: bridge, bridge: br0, addresses: 198.18.0.10-198.18.0.12, prefix: 24}", "update: {strategy: rolling, max_surge: 1}"),
			`f.yaml:9:14: service web: network.addresses 198.18.0.10-198.18.0.12 holds 3 addresses, fewer than the 4 a rollout needs (replicas + max_surge when rolling)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.input))
			if err == nil {
				t.Fatalf("parse: no error, want %s", tc.want)
			}
			if got := errorLines(t, err); !slices.Contains(got, tc.want) {
				t.Errorf("errors:\nwant %s\ngot  %s", tc.want, strings.Join(got, "\n     "))
			}
		})
	}
}

func TestPoolArithmetic(t *testing.T) {
	p, err := ParsePool("198.18.0.0/30")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "198.18.0.1-198.18.0.2"; got != want {
		t.Errorf("pool: want %s, got %s", want, got)
	}
	if got := p.Size(); got != 2 {
		t.Errorf("size: want 2, got %d", got)
	}
	a := netip.MustParseAddr("198.18.0.2")
	if i := p.Index(a); i != 1 || p.At(i) != a {
		t.Errorf("index of %s: want 1, got %d (at %s)", a, i, p.At(i))
	}
	if p.Contains(netip.MustParseAddr("198.18.0.3")) {
		t.Error("pool contains the broadcast address")
	}
}

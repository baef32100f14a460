package hypervisor

import (
	"regexp"
	"testing"
)

func TestMACFor(t *testing.T) {
	a, b := MACFor("web-3f2a91c0-abcde"), MACFor("web-3f2a91c0-abcdf")
	if !regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`).MatchString(a) {
		t.Fatalf("mac %q: want 52:54:00:xx:xx:xx", a)
	}
	if a != MACFor("web-3f2a91c0-abcde") {
		t.Error("mac of the same name changed")
	}
	if a == b {
		t.Errorf("two names, one mac %s", a)
	}
	// Pinned: a MAC that changed between versions would be reported as drift.
	if got, want := MACFor("web"), "52:54:00:4b:5e:57"; got != want {
		t.Errorf("mac of web: want %s, got %s", want, got)
	}
}

func TestKernelIPArg(t *testing.T) {
	tests := []struct {
		nw   Network
		want string
	}{
		{Network{Address: "198.18.0.10/24", Gateway: "198.18.0.1"}, "ip=198.18.0.10::198.18.0.1:255.255.255.0::eth0:off"},
		{Network{Address: "198.18.0.10/26"}, "ip=198.18.0.10:::255.255.255.192::eth0:off"},
		{Network{}, ""},
	}
	for _, tc := range tests {
		if got := tc.nw.KernelIPArg(); got != tc.want {
			t.Errorf("%+v: want %q, got %q", tc.nw, tc.want, got)
		}
	}
}

func TestCloudInitNetworkConfig(t *testing.T) {
	nw := Network{MAC: "52:54:00:01:02:03", Address: "198.18.0.10/24", Gateway: "198.18.0.1", DNS: []string{"198.18.0.1"}}
	want := `version: 2
ethernets:
  drover0:
    match:
      macaddress: "52:54:00:01:02:03"
    set-name: eth0
    dhcp4: false
    dhcp6: false
    addresses: ["198.18.0.10/24"]
    routes:
      - to: 0.0.0.0/0
        via: "198.18.0.1"
    nameservers:
      addresses: ["198.18.0.1"]
`
	if got := string(nw.CloudInitNetworkConfig()); got != want {
		t.Errorf("network-config:\nwant %s\ngot  %s", want, got)
	}
	if got := (Network{MAC: "52:54:00:01:02:03"}).CloudInitNetworkConfig(); got != nil {
		t.Errorf("dhcp: want no network-config, got %s", got)
	}
}

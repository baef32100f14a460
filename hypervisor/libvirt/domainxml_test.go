package libvirt

import (
	"errors"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

// touch makes an empty file standing in for an image the driver only names.
// parseDomain renders p and reads it back the way libvirt would.
func parseDomain(t *testing.T, p domainParams) *libvirtxml.Domain {
	t.Helper()
	out, err := domainXML(p)
	if err != nil {
		t.Fatalf("domainXML: %v", err)
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(out); err != nil {
		t.Fatalf("unmarshal produced xml: %v\n%s", err, out)
	}
	return &dom
}

func TestDomainXMLBootModes(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd, disk := hypervisortest.Touch(t, dir, "vmlinuz"), hypervisortest.Touch(t, dir, "initrd"), hypervisortest.Touch(t, dir, "golden.qcow2")
	tests := []struct {
		name                          string
		kernel, initrd, cmdline, disk string
		virtType                      string
		wantBootHD                    bool
	}{
		{"kernel only", kernel, "", "", "", virtTCG, false},
		{"kernel initrd cmdline", kernel, initrd, "console=ttyS0 drover.version=2", "", virtKVM, false},
		{"disk only", "", "", "", disk, virtTCG, true},
		{"kernel and disk", kernel, initrd, "root=/dev/vda", disk, virtKVM, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "web-1")
			spec.Kernel, spec.Initrd, spec.Cmdline, spec.Disk = tt.kernel, tt.initrd, tt.cmdline, tt.disk
			spec.CPUs, spec.MemoryMiB = 2, 256
			p := domainParams{spec: spec, virtType: tt.virtType, consoleLog: "/state/web-1.console.log", hostPort: 40000,
				meta: vmMetadata{Service: "web", SpecHash: "h", Created: "2025-11-25T20:00:00Z", NetworkMode: "user", HostPort: 40000, GuestPort: 8080}}
			if tt.disk != "" {
				p.overlay, p.backingFmt = "/state/web-1.qcow2", "raw"
			}
			dom := parseDomain(t, p)

			if dom.Type != tt.virtType {
				t.Errorf("domain type: want %q, got %q", tt.virtType, dom.Type)
			}
			if dom.Name != "web-1" {
				t.Errorf("name: want web-1, got %q", dom.Name)
			}
			if dom.Memory == nil || dom.Memory.Value != 256 || dom.Memory.Unit != "MiB" {
				t.Errorf("memory: want 256 MiB, got %+v", dom.Memory)
			}
			if dom.VCPU == nil || dom.VCPU.Value != 2 {
				t.Errorf("vcpu: want 2, got %+v", dom.VCPU)
			}
			if got := dom.OS.Type; got == nil || got.Machine != "q35" || got.Type != "hvm" || got.Arch != "x86_64" {
				t.Errorf("os type: want hvm x86_64 q35, got %+v", got)
			}
			if dom.OS.Kernel != tt.kernel || dom.OS.Initrd != tt.initrd || dom.OS.Cmdline != tt.cmdline {
				t.Errorf("kernel/initrd/cmdline: want %q %q %q, got %q %q %q",
					tt.kernel, tt.initrd, tt.cmdline, dom.OS.Kernel, dom.OS.Initrd, dom.OS.Cmdline)
			}
			gotBootHD := len(dom.OS.BootDevices) == 1 && dom.OS.BootDevices[0].Dev == "hd"
			if gotBootHD != tt.wantBootHD {
				t.Errorf("boot from hd: want %v, got %+v", tt.wantBootHD, dom.OS.BootDevices)
			}
			if dom.Features == nil || dom.Features.ACPI == nil {
				t.Errorf("features: want acpi (the power button needs it), got %+v", dom.Features)
			}
			if n := len(dom.Devices.Graphics); n != 0 {
				t.Errorf("graphics: want none, got %d", n)
			}
			if s := dom.Devices.Serials; len(s) != 1 || s[0].Source == nil || s[0].Source.File == nil || s[0].Source.File.Path != "/state/web-1.console.log" {
				t.Errorf("serial: want one to /state/web-1.console.log, got %+v", s)
			}

			if tt.disk == "" {
				if n := len(dom.Devices.Disks); n != 0 {
					t.Fatalf("disks: want none, got %d", n)
				}
				return
			}
			if n := len(dom.Devices.Disks); n != 1 {
				t.Fatalf("disks: want 1, got %d", n)
			}
			d := dom.Devices.Disks[0]
			if d.Driver == nil || d.Driver.Type != "qcow2" {
				t.Errorf("disk driver: want qcow2, got %+v", d.Driver)
			}
			if d.Source == nil || d.Source.File == nil || d.Source.File.File != "/state/web-1.qcow2" {
				t.Errorf("disk source: want the overlay /state/web-1.qcow2, got %+v", d.Source)
			}
			bs := d.BackingStore
			if bs == nil || bs.Source == nil || bs.Source.File == nil || bs.Source.File.File != tt.disk || bs.Format == nil || bs.Format.Type != "raw" {
				t.Errorf("backing store: want raw %s, got %+v", tt.disk, bs)
			}
			if d.Target == nil || d.Target.Bus != "virtio" || d.Target.Dev != "vda" {
				t.Errorf("disk target: want vda on virtio, got %+v", d.Target)
			}
		})
	}
}

func TestDomainXMLNetworkModes(t *testing.T) {
	tests := []struct {
		name        string
		network     hypervisor.Network
		wantArgs    []string // qemu:commandline, nil when none
		wantBridge  string
		wantNetwork string
	}{
		{
			name:    "user",
			network: hypervisor.Network{Mode: hypervisor.NetworkUser},
			wantArgs: []string{
				// restrict=on: the guest cannot open connections to the
				// host's 127.0.0.1 (10.0.2.2) or anywhere; hostfwd still works.
				"-netdev", "user,id=drover0,restrict=on,hostfwd=tcp:127.0.0.1:40123-:8080",
				"-device", "virtio-net-pci,netdev=drover0,bus=pcie.0,addr=0x10,romfile=",
			},
		},
		{name: "bridge", network: hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "br0"}, wantBridge: "br0"},
		{name: "network", network: hypervisor.Network{Mode: hypervisor.NetworkLibvirt, Network: "lab"}, wantNetwork: "lab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := hypervisortest.ValidSpec(t, "web-1")
			spec.Network = tt.network
			dom := parseDomain(t, domainParams{spec: spec, virtType: virtTCG, consoleLog: "/s/web-1.console.log", hostPort: 40123,
				meta: vmMetadata{Service: "web", SpecHash: "h", Created: "2025-11-25T20:00:00Z", NetworkMode: tt.network.Mode, GuestPort: 8080}})

			var gotArgs []string
			if dom.QEMUCommandline != nil {
				for _, a := range dom.QEMUCommandline.Args {
					gotArgs = append(gotArgs, a.Value)
				}
			}
			if strings.Join(gotArgs, " ") != strings.Join(tt.wantArgs, " ") {
				t.Errorf("qemu:commandline: want %q, got %q", tt.wantArgs, gotArgs)
			}
			if tt.wantArgs != nil {
				if n := len(dom.Devices.Interfaces); n != 0 {
					t.Errorf("interfaces: want none beside the command-line NIC, got %d", n)
				}
				return
			}
			if n := len(dom.Devices.Interfaces); n != 1 {
				t.Fatalf("interfaces: want 1, got %d", n)
			}
			ifc := dom.Devices.Interfaces[0]
			if ifc.Model == nil || ifc.Model.Type != "virtio" {
				t.Errorf("interface model: want virtio, got %+v", ifc.Model)
			}
			var gotBridge, gotNetwork string
			if ifc.Source != nil && ifc.Source.Bridge != nil {
				gotBridge = ifc.Source.Bridge.Bridge
			}
			if ifc.Source != nil && ifc.Source.Network != nil {
				gotNetwork = ifc.Source.Network.Network
			}
			if gotBridge != tt.wantBridge || gotNetwork != tt.wantNetwork {
				t.Errorf("interface source: want bridge %q network %q, got bridge %q network %q", tt.wantBridge, tt.wantNetwork, gotBridge, gotNetwork)
			}
			if ch := dom.Devices.Channels; len(ch) != 1 || ch[0].Target == nil || ch[0].Target.VirtIO == nil || ch[0].Target.VirtIO.Name != "org.qemu.guest_agent.0" {
				t.Errorf("channels: want the guest agent channel, got %+v", ch)
			}
		})
	}
}

func TestDomainXMLCarriesMetadata(t *testing.T) {
	spec := hypervisortest.ValidSpec(t, "web-1")
	want := vmMetadata{Service: "web", SpecHash: "3f2a", Revision: "abc", Version: "1.0 <beta> & co",
		Created: "2025-11-25T20:00:00Z", NetworkMode: "user", HostPort: 40000, GuestPort: 8080,
		Overlay: "/s/web-1.qcow2", ConsoleLog: "/s/web-1.console.log"}
	dom := parseDomain(t, domainParams{spec: spec, virtType: virtTCG, hostPort: 40000, meta: want})
	if dom.Metadata == nil || !strings.Contains(dom.Metadata.XML, `xmlns="`+metadataNS+`"`) {
		t.Fatalf("metadata: want an element in %s, got %+v", metadataNS, dom.Metadata)
	}
	got, _, err := decodeMetadata(dom.Metadata.XML)
	if err != nil {
		t.Fatalf("decode metadata: %v", err)
	}
	got.XMLName = want.XMLName
	if got != want {
		t.Errorf("metadata round trip:\nwant %+v\ngot  %+v", want, got)
	}
}

func TestDecodeMetadata(t *testing.T) {
	const ok = `<vm><service>web</service><spec_hash>h</spec_hash><created>2025-11-25T20:00:00Z</created><network_mode>user</network_mode><host_port>4000</host_port><guest_port>8080</guest_port></vm>`
	_, meta, err := decodeMetadata(ok)
	if err != nil {
		t.Fatalf("decode %s: %v", ok, err)
	}
	if want := time.Date(2025, 11, 25, 20, 0, 0, 0, time.UTC); !meta.Created.Equal(want) || meta.Service != "web" {
		t.Errorf("decode: want service web created %v, got %+v", want, meta)
	}
	tests := []struct{ name, xml, wantErr string }{
		{"not xml", `<vm><service>`, "parse drover metadata"},
		{"no service", strings.Replace(ok, "<service>web</service>", "", 1), "no service"},
		{"no spec hash", strings.Replace(ok, "<spec_hash>h</spec_hash>", "", 1), "no spec_hash"},
		{"bad created", strings.Replace(ok, "2025-11-25T20:00:00Z", "yesterday", 1), "created"},
		{"bad port", strings.Replace(ok, "<host_port>4000", "<host_port>x", 1), "parse drover metadata"},
		{"user without host port", strings.Replace(ok, "<host_port>4000</host_port>", "", 1), "host_port 0"},
		{"unknown mode", strings.Replace(ok, ">user<", ">tap<", 1), `network_mode "tap"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeMetadata(tt.xml)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decodeMetadata: want error containing %q, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestIsQEMUURI(t *testing.T) {
	for uri, want := range map[string]bool{
		"qemu:///system":                true,
		"qemu:///session":               true,
		"qemu+ssh://host/system":        true,
		"test:///default":               false,
		"lxc:///":                       false,
		"qemuish":                       false,
		"xen+ssh://qemu.example/system": false,
	} {
		if got := isQEMUURI(uri); got != want {
			t.Errorf("isQEMUURI(%q): want %v, got %v", uri, want, got)
		}
	}
}

func TestInvalidSpecIsErrInvalidSpec(t *testing.T) {
	d := &Driver{}
	_, err := d.Create(t.Context(), hypervisor.Spec{Name: "web-1"})
	if !errors.Is(err, errInvalidSpec) || !strings.Contains(err.Error(), `create vm "web-1"`) {
		t.Fatalf("Create(invalid): want errInvalidSpec naming the vm, got %v", err)
	}
}

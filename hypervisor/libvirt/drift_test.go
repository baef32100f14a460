package libvirt

import (
	"slices"
	"testing"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/hypervisortest"
)

// driftParams renders what Create would define for spec, with its record.
func driftParams(spec hypervisor.Spec) domainParams {
	p := domainParams{
		spec: spec, virtType: virtTCG, consoleLog: "/state/" + consoleLogName(spec.Name), hostPort: 41000,
		meta: vmMetadata{
			Service: spec.Meta.Service, SpecHash: spec.Meta.SpecHash, Created: "2025-11-25T20:00:00Z",
			NetworkMode: spec.Network.Mode, GuestPort: spec.GuestPort, MAC: spec.Network.MAC, Address: spec.Network.Address,
			CreatedWith: &createdWith{
				CPUs: spec.CPUs, MemoryMiB: spec.MemoryMiB, Kernel: spec.Kernel, Initrd: spec.Initrd,
				Cmdline: spec.Cmdline, Disk: spec.Disk, Bridge: spec.Network.Bridge, Network: spec.Network.Network,
			},
		},
	}
	if spec.Network.Mode == hypervisor.NetworkUser {
		p.meta.HostPort = p.hostPort
	}
	if spec.Disk != "" {
		p.overlay, p.backingFmt = "/state/"+overlayName(spec.Name), "raw"
		p.meta.Overlay = p.overlay
	}
	if spec.Seed != nil {
		p.seed = "/state/" + seedName(spec.Name)
		p.meta.Seed = p.seed
	}
	if spec.Firmware == hypervisor.FirmwareUEFI {
		p.uefiVars = "/state/" + uefiVarsName(spec.Name)
		p.meta.UEFIVars = p.uefiVars
		p.meta.CreatedWith.Firmware = hypervisor.FirmwareUEFI
	}
	return p
}

func TestDefinitionDrift(t *testing.T) {
	user := hypervisortest.ValidSpec(t, "drift-user")
	user.Disk = hypervisortest.Touch(t, t.TempDir(), "golden.raw")
	bridge := hypervisortest.ValidSpec(t, "drift-bridge")
	bridge.Network = hypervisor.Network{Mode: hypervisor.NetworkBridge, Bridge: "br0", MAC: hypervisor.MACFor("drift-bridge"), Address: "198.18.0.10/24"}
	network := hypervisortest.ValidSpec(t, "drift-net")
	network.Network = hypervisor.Network{Mode: hypervisor.NetworkLibvirt, Network: "default"}

	seeded := hypervisortest.ValidSpec(t, "drift-seed")
	seeded.Kernel, seeded.Initrd, seeded.Cmdline = "", "", ""
	seeded.Disk = user.Disk
	seeded.Seed = &hypervisor.Seed{MetaData: []byte("{}")}

	uefi := seeded
	uefi.Name, uefi.Firmware = "drift-uefi", hypervisor.FirmwareUEFI

	extraDisk := libvirtxml.DomainDisk{
		Device: "disk",
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: "/tmp/extra.img"}},
		Target: &libvirtxml.DomainDiskTarget{Dev: "vdb", Bus: "virtio"},
	}
	bridgeIface := func(br string) libvirtxml.DomainInterface {
		return libvirtxml.DomainInterface{Source: &libvirtxml.DomainInterfaceSource{
			Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: br}}}
	}
	tests := []struct {
		name   string
		spec   hypervisor.Spec
		mutate func(*libvirtxml.Domain)
		want   []string
	}{
		{"as created: user and disk", user, func(*libvirtxml.Domain) {}, nil},
		{"as created: bridge", bridge, func(*libvirtxml.Domain) {}, nil},
		{"as created: network", network, func(*libvirtxml.Domain) {}, nil},
		{"as created: disk boot with a seed", seeded, func(*libvirtxml.Domain) {}, nil},
		{"seed detached", seeded, func(d *libvirtxml.Domain) { d.Devices.Disks = d.Devices.Disks[:1] },
			[]string{"seed detached: /state/drift-seed.cidata.iso"}},
		{"seed swapped", seeded, func(d *libvirtxml.Domain) { d.Devices.Disks[1].Source.File.File = "/tmp/other.iso" },
			[]string{"seed: created as /state/drift-seed.cidata.iso, now /tmp/other.iso"}},
		{"as created: uefi", uefi, func(*libvirtxml.Domain) {}, nil},
		{"uefi variable store swapped", uefi, func(d *libvirtxml.Domain) { d.OS.NVRam.NVRam = "/tmp/vars.fd" },
			[]string{"firmware: uefi variable store created as /state/drift-uefi.uefi-vars.fd, now /tmp/vars.fd"}},
		{"uefi loader removed", uefi, func(d *libvirtxml.Domain) { d.OS.Loader, d.OS.NVRam = nil, nil },
			[]string{"firmware: created with uefi (" + hypervisor.OVMFCode + "), now loader none",
				"firmware: uefi variable store created as /state/drift-uefi.uefi-vars.fd, now none"}},
		{"loader added to a bios vm", seeded, func(d *libvirtxml.Domain) {
			d.OS.Loader = &libvirtxml.DomainLoader{Path: "/tmp/evil.fd", Readonly: "yes", Type: "pflash"}
		}, []string{"firmware: created with bios, now loader /tmp/evil.fd"}},
		{"seed made writable", seeded, func(d *libvirtxml.Domain) { d.Devices.Disks[1].ReadOnly = nil },
			[]string{"seed: attached read-only, now writable"}},
		{"memory in KiB, as libvirt writes it, is no drift", user, func(d *libvirtxml.Domain) {
			d.Memory = &libvirtxml.DomainMemory{Value: 128 * 1024, Unit: "KiB"}
			d.CurrentMemory = &libvirtxml.DomainCurrentMemory{Value: 128 * 1024}
		}, nil},
		{"memory raised", user, func(d *libvirtxml.Domain) {
			d.Memory = &libvirtxml.DomainMemory{Value: 256 * 1024, Unit: "KiB"}
		}, []string{"memory: created with 128 MiB, now 256 MiB"}},
		{"current memory lowered", user, func(d *libvirtxml.Domain) {
			d.CurrentMemory = &libvirtxml.DomainCurrentMemory{Value: 64, Unit: "MiB"}
		}, []string{"memory: created with 128 MiB, now 128 MiB (64 MiB current)"}},
		{"hotplug maximum", user, func(d *libvirtxml.Domain) {
			d.MaximumMemory = &libvirtxml.DomainMaxMemory{Value: 1, Unit: "GiB", Slots: 4}
		}, []string{"memory: hotplug maximum 1024 MiB added"}},
		{"vcpus raised", user, func(d *libvirtxml.Domain) { d.VCPU.Value = 2 },
			[]string{"vcpus: created with 1, now 2"}},
		{"vcpus raised, not online", user, func(d *libvirtxml.Domain) { d.VCPU.Value, d.VCPU.Current = 4, 1 },
			[]string{"vcpus: created with 1, now 4 (1 online)"}},
		{"kernel, initrd and cmdline", user, func(d *libvirtxml.Domain) {
			d.OS.Kernel, d.OS.Initrd, d.OS.Cmdline = "/other/vmlinuz", "", "console=ttyS0 single"
		}, []string{
			"kernel: created with " + user.Kernel + ", now /other/vmlinuz",
			"initrd: created with " + user.Initrd + ", now none",
			"cmdline: created with " + user.Cmdline + ", now console=ttyS0 single",
		}},
		{"disk added", user, func(d *libvirtxml.Domain) {
			d.Devices.Disks = append(d.Devices.Disks, extraDisk)
		}, []string{"disk added: disk vdb /tmp/extra.img"}},
		{"overlay removed", user, func(d *libvirtxml.Domain) { d.Devices.Disks = nil },
			[]string{"disk removed: /state/drift-user.qcow2"}},
		{"overlay rebased", user, func(d *libvirtxml.Domain) {
			d.Devices.Disks[0].BackingStore.Source.File.File = "/elsewhere.raw"
		}, []string{"disk disk vda: backing file created as " + user.Disk + ", now /elsewhere.raw"}},
		{"port forward changed", user, func(d *libvirtxml.Domain) {
			d.QEMUCommandline.Args[1].Value = "user,id=drover0,hostfwd=tcp:0.0.0.0:41000-:8080"
		}, []string{`network: qemu arguments created as "-netdev user,id=drover0,restrict=on,hostfwd=tcp:127.0.0.1:41000-:8080 ` +
			`-device virtio-net-pci,netdev=drover0,bus=pcie.0,addr=0x10,romfile=", now "-netdev ` +
			`user,id=drover0,hostfwd=tcp:0.0.0.0:41000-:8080 -device virtio-net-pci,netdev=drover0,bus=pcie.0,addr=0x10,romfile="`}},
		{"user networking defined before it was restricted", user, func(d *libvirtxml.Domain) {
			d.QEMUCommandline.Args[1].Value = "user,id=drover0,hostfwd=tcp:127.0.0.1:41000-:8080"
		}, []string{"network: user networking not restricted (defined by an older Drover): the guest can reach services on the host's 127.0.0.1"}},
		{"interface added to user networking", user, func(d *libvirtxml.Domain) {
			d.Devices.Interfaces = append(d.Devices.Interfaces, bridgeIface("br9"))
		}, []string{"network: interface added (bridge br9)"}},
		{"bridge swapped", bridge, func(d *libvirtxml.Domain) { d.Devices.Interfaces[0] = bridgeIface("br1") },
			[]string{"network: created on bridge br0, now bridge br1"}},
		{"mac changed", bridge, func(d *libvirtxml.Domain) { d.Devices.Interfaces[0].MAC.Address = "52:54:00:00:00:01" },
			[]string{"network: mac created as " + hypervisor.MACFor("drift-bridge") + ", now 52:54:00:00:00:01"}},
		{"moved to a libvirt network", bridge, func(d *libvirtxml.Domain) {
			d.Devices.Interfaces[0].Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: "default"}}
		}, []string{"network: created on bridge br0, now network default"}},
		{"second interface", network, func(d *libvirtxml.Domain) {
			d.Devices.Interfaces = append(d.Devices.Interfaces, bridgeIface("br0"))
		}, []string{"network: interface added (bridge br0)"}},
		{"interface removed", network, func(d *libvirtxml.Domain) { d.Devices.Interfaces = nil },
			[]string{"network: interface removed (network default)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := driftParams(tt.spec)
			x, err := domainXML(p)
			if err != nil {
				t.Fatal(err)
			}
			var def libvirtxml.Domain
			if err := def.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			tt.mutate(&def)
			// Through XML and back, as libvirt hands it over.
			x, err = def.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			def = libvirtxml.Domain{}
			if err := def.Unmarshal(x); err != nil {
				t.Fatal(err)
			}
			got := definitionDrift(p.meta, &def, true)
			if !slices.Equal(got, tt.want) {
				t.Errorf("drift:\nwant %q\ngot  %q", tt.want, got)
			}
		})
	}
}

func TestMemBytes(t *testing.T) {
	tests := []struct {
		v    uint
		unit string
		want uint64
	}{
		{131072, "KiB", 128 << 20}, {131072, "", 128 << 20}, {128, "MiB", 128 << 20}, {128, "M", 128 << 20},
		{1, "GiB", 1 << 30}, {1, "GB", 1e9}, {1000, "KB", 1e6}, {512, "b", 512}, {1, "bogus", 0},
	}
	for _, tt := range tests {
		if got := memBytes(tt.v, tt.unit); got != tt.want {
			t.Errorf("memBytes(%d, %q): want %d, got %d", tt.v, tt.unit, tt.want, got)
		}
	}
}

// redefine edits a domain's persistent definition behind the driver's back, as virsh
// edit does, keeping everything else (Drover's metadata included).
func redefine(t *testing.T, d *Driver, name string, edit func(*libvirtxml.Domain)) {
	t.Helper()
	conn, err := d.connection(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.LookupDomainByName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	x, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	edit(&def)
	if x, err = def.Marshal(); err != nil {
		t.Fatal(err)
	}
	nd, err := conn.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("redefine %s: %v", name, err)
	}
	nd.Free()
}

// listDrift is the drift List reports for name.
func listDrift(t *testing.T, d *Driver, name string) []string {
	t.Helper()
	vms, err := d.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	vm, ok := findVM(vms, name)
	if !ok {
		t.Fatalf("List: %s not listed", name)
	}
	got, err := d.Get(t.Context(), name)
	if err != nil || !slices.Equal(got.Drift, vm.Drift) {
		t.Errorf("Get %s: want the drift List reports %q, got %q, %v", name, vm.Drift, got.Drift, err)
	}
	return vm.Drift
}

func TestListReportsDrift(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()

	spec := hypervisortest.ValidSpec(t, "drift-edit")
	spec.CPUs = 2
	hypervisortest.DestroyAtEnd(t, d, spec.Name)
	if _, err := d.Create(ctx, spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := listDrift(t, d, spec.Name); len(got) > 0 {
		t.Fatalf("fresh vm: want no drift, got %q", got)
	}

	// virsh setmaxmem --config: the running VM keeps its memory until it reboots.
	redefine(t, d, spec.Name, func(def *libvirtxml.Domain) {
		def.Memory = &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"}
		def.CurrentMemory = nil
	})
	want := []string{"memory: created with 128 MiB, now 256 MiB (definition only, from the next boot)"}
	if got := listDrift(t, d, spec.Name); !slices.Equal(got, want) {
		t.Errorf("after a persistent memory edit:\nwant %q\ngot  %q", want, got)
	}

	// virsh setvcpus --live 1: only the running VM changes.
	conn, err := d.connection(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dom, err := conn.LookupDomainByName(spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer dom.Free()
	if err := dom.SetVcpusFlags(1, libvirt.DOMAIN_VCPU_LIVE); err != nil {
		t.Fatalf("setvcpus --live: %v", err)
	}
	got := listDrift(t, d, spec.Name)
	if !slices.Contains(got, "vcpus: created with 2, now 2 (1 online) (running vm only)") {
		t.Errorf("after a live vcpu change: want the vcpus named as a running vm change, got %q", got)
	}

	// Stopped, only the definition counts.
	if err := dom.Destroy(); err != nil {
		t.Fatal(err)
	}
	want = []string{"memory: created with 128 MiB, now 256 MiB"}
	if got := listDrift(t, d, spec.Name); !slices.Equal(got, want) {
		t.Errorf("stopped after both changes:\nwant %q\ngot  %q", want, got)
	}
}

func TestNoDriftWithoutRecord(t *testing.T) {
	d := newTestDriver(t)
	// A domain made by a Drover that did not record what it created: only the
	// metadata it always had.
	defineRaw(t, d, "drift-old", `<vm xmlns="`+metadataNS+`"><service>web</service><spec_hash>abc</spec_hash>`+
		`<created>2025-11-25T20:00:00Z</created><network_mode>user</network_mode><host_port>41000</host_port>`+
		`<guest_port>8080</guest_port></vm>`)
	if got := listDrift(t, d, "drift-old"); len(got) > 0 {
		t.Errorf("domain without a creation record: want no drift, got %q", got)
	}
}

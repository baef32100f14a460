package libvirt

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/hypervisor/cidata"
)

// drift compares a domain with what Create recorded in its metadata: the persistent
// definition always (virsh edit, setmaxmem --config, attach-disk --config), and the
// live one too while it runs (setvcpus --live, attach-disk --live).
func (d *Driver) drift(dom *libvirt.Domain, name string, m vmMetadata, running bool) ([]string, error) {
	if m.CreatedWith == nil {
		return nil, nil
	}
	persistent, err := d.definitionDrift(dom, name, m, libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return nil, err
	}
	// The seed's bytes are compared at every List, not cached with the definition:
	// a file swapped on disk leaves the definition as it was.
	persistent = append(persistent, seedFileDrift(m)...)
	if !running {
		return persistent, nil
	}
	live, err := d.definitionDrift(dom, name, m, 0)
	if err != nil {
		return nil, err
	}
	// An edit of the definition reaches the VM at its next boot; a live change is
	// lost then. Either way the VM is no longer what was created, and the operator
	// wants to know which one it was.
	var out []string
	for _, s := range persistent {
		if slices.Contains(live, s) {
			out = append(out, s)
		} else {
			out = append(out, s+" (definition only, from the next boot)")
		}
	}
	live = append(live, seedFileDrift(m)...)
	for _, s := range live {
		if !slices.Contains(persistent, s) {
			out = append(out, s+" (running vm only)")
		}
	}
	return out, nil
}

func (d *Driver) definitionDrift(dom *libvirt.Domain, name string, m vmMetadata, flags libvirt.DomainXMLFlags) ([]string, error) {
	which := "live"
	if flags&libvirt.DOMAIN_XML_INACTIVE != 0 {
		which = "persistent"
	}
	raw, err := dom.GetXMLDesc(flags)
	if err != nil {
		return nil, fmt.Errorf("read %s definition: %w", which, err)
	}
	key := name + "\x00" + which
	if lines, ok := d.drifts.get(key, raw, m); ok {
		return lines, nil
	}
	var def libvirtxml.Domain
	var lines []string
	if err := def.Unmarshal(raw); err != nil {
		// libvirt wrote it, so this is a libvirtxml gap rather than an edit: say so
		// instead of guessing.
		lines = []string{fmt.Sprintf("%s definition: cannot be read to compare: %v", which, err)}
	} else {
		lines = definitionDrift(m, &def, isQEMUURI(d.uri))
	}
	d.drifts.put(key, raw, m, lines)
	return slices.Clone(lines), nil
}

// driftCache remembers the drift found in each domain's last definitions. Parsing a
// definition costs more than everything else List does for a domain, and they rarely
// change: a definition identical to the last one (with the same record) is not parsed
// again, so a pass over an unchanged fleet parses nothing.
type driftCache struct {
	mu sync.Mutex
	m  map[string]driftEntry // domain name NUL persistent|live
}

type driftEntry struct {
	raw   string
	meta  vmMetadata
	cw    createdWith
	lines []string
}

func (c *driftCache) get(key, raw string, m vmMetadata) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.raw != raw || !sameRecord(e.meta, e.cw, m) {
		return nil, false
	}
	return slices.Clone(e.lines), true
}

func (c *driftCache) put(key, raw string, m vmMetadata, lines []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]driftEntry{}
	}
	e := driftEntry{raw: raw, meta: m, lines: lines}
	if m.CreatedWith != nil {
		e.cw = *m.CreatedWith
	}
	e.meta.CreatedWith = nil
	c.m[key] = e
}

// keep forgets the domains not named, so the cache holds only domains that exist.
func (c *driftCache) keep(names map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.m {
		name, _, _ := strings.Cut(key, "\x00")
		if !names[name] {
			delete(c.m, key)
		}
	}
}

func sameRecord(meta vmMetadata, cw createdWith, m vmMetadata) bool {
	if m.CreatedWith == nil || *m.CreatedWith != cw {
		return false
	}
	m.CreatedWith = nil
	return m == meta
}

// definitionDrift lists how def differs from what m says the domain was created
// with. qemuArgs: the connection is libvirt's QEMU driver, the only one that keeps
// <qemu:commandline>, which carries the user-mode NIC.
func definitionDrift(m vmMetadata, def *libvirtxml.Domain, qemuArgs bool) []string {
	cw := m.CreatedWith
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	var vcpus, online uint
	if def.VCPU != nil {
		vcpus, online = def.VCPU.Value, def.VCPU.Current
	}
	if online == 0 {
		online = vcpus
	}
	switch want := uint(cw.CPUs); {
	case vcpus == want && online == want:
	case vcpus == online:
		add("vcpus: created with %d, now %d", want, vcpus)
	default:
		add("vcpus: created with %d, now %d (%d online)", want, vcpus, online)
	}

	wantMem := uint64(cw.MemoryMiB) << 20
	var mem, cur uint64
	if def.Memory != nil {
		mem = memBytes(def.Memory.Value, def.Memory.Unit)
	}
	cur = mem
	if def.CurrentMemory != nil {
		cur = memBytes(def.CurrentMemory.Value, def.CurrentMemory.Unit)
	}
	switch {
	case mem == wantMem && cur == wantMem:
	case mem == cur:
		add("memory: created with %s, now %s", fmtBytes(wantMem), fmtBytes(mem))
	default:
		add("memory: created with %s, now %s (%s current)", fmtBytes(wantMem), fmtBytes(mem), fmtBytes(cur))
	}
	if def.MaximumMemory != nil {
		add("memory: hotplug maximum %s added", fmtBytes(memBytes(def.MaximumMemory.Value, def.MaximumMemory.Unit)))
	}

	var kernel, initrd, cmdline string
	if def.OS != nil {
		kernel, initrd, cmdline = def.OS.Kernel, def.OS.Initrd, def.OS.Cmdline
	}
	for _, f := range []struct{ what, was, now string }{
		{"kernel", cw.Kernel, kernel}, {"initrd", cw.Initrd, initrd}, {"cmdline", cw.Cmdline, cmdline},
	} {
		if f.was != f.now {
			add("%s: created with %s, now %s", f.what, orNone(f.was), orNone(f.now))
		}
	}

	var disks []libvirtxml.DomainDisk
	var ifaces []libvirtxml.DomainInterface
	if def.Devices != nil {
		disks, ifaces = def.Devices.Disks, def.Devices.Interfaces
	}
	out = append(out, firmwareDrift(m, def.OS)...)
	out = append(out, diskDrift(m, disks)...)
	out = append(out, interfaceDrift(m, ifaces)...)

	if qemuArgs && m.NetworkMode == hypervisor.NetworkUser {
		var got []string
		if def.QEMUCommandline != nil {
			for _, a := range def.QEMUCommandline.Args {
				got = append(got, a.Value)
			}
		}
		switch want := userNetArgs(m.HostPort, m.GuestPort); {
		case slices.Equal(got, want):
		case slices.Equal(got, unrestrictedUserNetArgs(m.HostPort, m.GuestPort)):
			add("network: user networking not restricted (defined by an older Drover): the guest can reach services on the host's 127.0.0.1")
		default:
			add("network: qemu arguments created as %q, now %q", strings.Join(want, " "), strings.Join(got, " "))
		}
	}
	return out
}

// diskDrift: Drover's only disk is the overlay over the golden image, if it made one.
func diskDrift(m vmMetadata, disks []libvirtxml.DomainDisk) []string {
	var out []string
	rest := slices.Clone(disks)
	if m.Seed != "" {
		i := slices.IndexFunc(rest, func(d libvirtxml.DomainDisk) bool { return diskSource(d.Source) == m.Seed })
		if i < 0 {
			i = slices.IndexFunc(rest, func(d libvirtxml.DomainDisk) bool { return d.Target != nil && d.Target.Dev == seedTargetDev })
		}
		switch {
		case i < 0:
			out = append(out, "seed detached: "+m.Seed)
		default:
			if src := diskSource(rest[i].Source); src != m.Seed {
				out = append(out, fmt.Sprintf("seed: created as %s, now %s", m.Seed, orNone(src)))
			}
			if rest[i].ReadOnly == nil {
				out = append(out, "seed: attached read-only, now writable")
			}
			rest = slices.Delete(rest, i, i+1)
		}
	}
	if m.Overlay != "" {
		i := slices.IndexFunc(rest, func(d libvirtxml.DomainDisk) bool { return diskSource(d.Source) == m.Overlay })
		switch {
		case i >= 0:
			// A running domain lists the chain it opened; libvirt 9 keeps the
			// defined one in the persistent definition.
			if bs := rest[i].BackingStore; bs != nil && bs.Source != nil && diskSource(bs.Source) != m.CreatedWith.Disk {
				out = append(out, fmt.Sprintf("disk %s: backing file created as %s, now %s",
					diskTarget(rest[i]), orNone(m.CreatedWith.Disk), orNone(diskSource(bs.Source))))
			}
			rest = slices.Delete(rest, i, i+1)
		default:
			out = append(out, fmt.Sprintf("disk removed: %s", m.Overlay))
		}
	}
	for _, d := range rest {
		out = append(out, fmt.Sprintf("disk added: %s %s", diskTarget(d), orNone(diskSource(d.Source))))
	}
	return out
}

func diskSource(s *libvirtxml.DomainDiskSource) string {
	switch {
	case s == nil:
		return ""
	case s.File != nil:
		return s.File.File
	case s.Block != nil:
		return s.Block.Dev
	case s.Volume != nil:
		return s.Volume.Pool + "/" + s.Volume.Volume
	case s.Network != nil:
		return s.Network.Protocol + ":" + s.Network.Name
	case s.Dir != nil:
		return s.Dir.Dir
	default:
		return "(other source)"
	}
}

func diskTarget(d libvirtxml.DomainDisk) string {
	dev := "disk"
	if d.Device != "" {
		dev = d.Device
	}
	if d.Target != nil && d.Target.Dev != "" {
		return dev + " " + d.Target.Dev
	}
	return dev
}

// interfaceDrift: user networking has no <interface> (its NIC is a QEMU argument);
// bridge and network modes have exactly the one Create defined.
func interfaceDrift(m vmMetadata, ifaces []libvirtxml.DomainInterface) []string {
	var want string
	switch m.NetworkMode {
	case hypervisor.NetworkBridge:
		want = "bridge " + m.CreatedWith.Bridge
	case hypervisor.NetworkLibvirt:
		want = "network " + m.CreatedWith.Network
	}
	got := make([]string, 0, len(ifaces))
	for _, iface := range ifaces {
		got = append(got, describeInterface(iface))
	}
	var out []string
	if want != "" {
		if i := slices.Index(got, want); i >= 0 {
			if now := interfaceMACOf(ifaces[i]); m.MAC != "" && !strings.EqualFold(now, m.MAC) {
				out = append(out, fmt.Sprintf("network: mac created as %s, now %s", m.MAC, orNone(now)))
			}
			got = slices.Delete(got, i, i+1)
		} else if len(got) == 1 {
			return []string{fmt.Sprintf("network: created on %s, now %s", want, got[0])}
		} else {
			out = append(out, "network: interface removed ("+want+")")
		}
	}
	for _, g := range got {
		out = append(out, "network: interface added ("+g+")")
	}
	return out
}

func interfaceMACOf(iface libvirtxml.DomainInterface) string {
	if iface.MAC == nil {
		return ""
	}
	return iface.MAC.Address
}

func describeInterface(iface libvirtxml.DomainInterface) string {
	s := iface.Source
	switch {
	case s == nil:
		return "no source"
	case s.Bridge != nil:
		return "bridge " + s.Bridge.Bridge
	case s.Network != nil:
		return "network " + s.Network.Network
	case s.User != nil:
		return "user"
	case s.Direct != nil:
		return "direct " + s.Direct.Dev
	case s.Ethernet != nil:
		return "ethernet"
	default:
		return "other"
	}
}

// memBytes converts a libvirt memory value; libvirt's own default unit is KiB.
func memBytes(v uint, unit string) uint64 {
	var mult uint64
	switch unit {
	case "b", "bytes":
		mult = 1
	case "KB":
		mult = 1000
	case "", "k", "K", "KiB":
		mult = 1 << 10
	case "MB":
		mult = 1000 * 1000
	case "M", "MiB":
		mult = 1 << 20
	case "GB":
		mult = 1000 * 1000 * 1000
	case "G", "GiB":
		mult = 1 << 30
	case "TB":
		mult = 1000 * 1000 * 1000 * 1000
	case "T", "TiB":
		mult = 1 << 40
	}
	return uint64(v) * mult
}

func fmtBytes(b uint64) string {
	if b%(1<<20) == 0 {
		return strconv.FormatUint(b>>20, 10) + " MiB"
	}
	return strconv.FormatUint(b>>10, 10) + " KiB"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// seedFileDrift says whether the seed file still holds what Create wrote.
func seedFileDrift(m vmMetadata) []string {
	if m.Seed == "" || m.CreatedWith == nil || m.CreatedWith.SeedSHA256 == "" {
		return nil
	}
	switch sum, err := cidata.Digest(m.Seed); {
	case errors.Is(err, os.ErrNotExist):
		return []string{"seed removed: " + m.Seed}
	case err != nil:
		return []string{fmt.Sprintf("seed %s: cannot be read to compare: %v", m.Seed, err)}
	case sum != m.CreatedWith.SeedSHA256:
		return []string{fmt.Sprintf("seed %s: content swapped since it was created", m.Seed)}
	}
	return nil
}

// firmwareDrift: a UEFI VM keeps OVMF and its own variable store; any other VM has no
// loader of Drover's choosing.
func firmwareDrift(m vmMetadata, dos *libvirtxml.DomainOS) []string {
	var loader, nvram string
	if dos != nil && dos.Loader != nil {
		loader = dos.Loader.Path
	}
	if dos != nil && dos.NVRam != nil {
		nvram = dos.NVRam.NVRam
	}
	if m.CreatedWith.Firmware != hypervisor.FirmwareUEFI {
		if loader != "" {
			return []string{"firmware: created with bios, now loader " + loader}
		}
		return nil
	}
	var out []string
	if loader != hypervisor.OVMFCode {
		out = append(out, fmt.Sprintf("firmware: created with uefi (%s), now loader %s", hypervisor.OVMFCode, orNone(loader)))
	}
	if nvram != m.UEFIVars {
		out = append(out, fmt.Sprintf("firmware: uefi variable store created as %s, now %s", orNone(m.UEFIVars), orNone(nvram)))
	}
	return out
}

package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// recordFormat marks metadata.json as Drover's; an entry without it is not Drover's.
// It never changes within a major version.
const recordFormat = "drover.dev/qemu-vm/1"

// record is a VM's metadata.json: the hypervisor.Metadata plus what List needs to
// report the VM. Everything else about the VM follows from its name.
type record struct {
	Format      string    `json:"format"`
	Name        string    `json:"name"`
	Fleet       string    `json:"fleet,omitempty"`
	Service     string    `json:"service"`
	SpecHash    string    `json:"spec_hash"`
	Revision    string    `json:"revision"`
	Version     string    `json:"version"`
	Created     time.Time `json:"created"`
	NetworkMode string    `json:"network_mode"`
	HostPort    int       `json:"host_port,omitempty"` // user networking only
	GuestPort   int       `json:"guest_port"`
	// Bridge, Tap and MAC are a bridged VM's NIC: the host bridge, the tap the driver
	// made on it, and the guest's MAC. Address is its static address with prefix
	// ("198.18.0.10/24"), empty under DHCP.
	Bridge  string `json:"bridge,omitempty"`
	Tap     string `json:"tap,omitempty"`
	MAC     string `json:"mac,omitempty"`
	Address string `json:"address,omitempty"`
	Accel   string `json:"accel"` // for the operator: what the VM was started with
	// CreatedWith and Args are what Create started the VM with, so List can tell a
	// VM changed since. Entries written before they were recorded have neither and
	// report no drift.
	CreatedWith *createdWith `json:"created_with,omitempty"`
	Args        []string     `json:"args,omitempty"` // QEMU's arguments, without the binary
	// Destroying is set once Destroy has stopped the VM's process, so Sweep can
	// finish an entry whose Destroy was killed midway.
	Destroying bool `json:"destroying,omitempty"`
}

// createdWith is the part of the spec that shapes the VM. The network mode and the
// ports are in the record already.
type createdWith struct {
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Kernel    string `json:"kernel,omitempty"`
	Initrd    string `json:"initrd,omitempty"`
	Cmdline   string `json:"cmdline,omitempty"`
	Disk      string `json:"disk,omitempty"`    // the golden image: the overlay's backing file
	Overlay   string `json:"overlay,omitempty"` // with Disk
	// Added with disk boots and cloud-init; empty (or 0) when unused.
	Firmware      string `json:"firmware,omitempty"`        // uefi, for a disk boot
	DiskSizeBytes int64  `json:"disk_size_bytes,omitempty"` // the overlay's grown size
	Seed          string `json:"seed,omitempty"`            // the cloud-init seed volume
	SeedSHA256    string `json:"seed_sha256,omitempty"`     // its content as written
}

func (r record) meta() hypervisor.Metadata {
	return hypervisor.Metadata{
		Fleet:    r.Fleet,
		Service:  r.Service,
		SpecHash: r.SpecHash,
		Revision: r.Revision,
		Version:  r.Version,
		Created:  r.Created,
		MAC:      r.MAC,
		Address:  r.Address,
	}
}

// vmPaths are the files of one VM's entry.
type vmPaths struct {
	dir      string
	metadata string
	qmp      string
	agent    string // the guest agent's socket, bridged VMs only
	pid      string
	overlay  string
	seed     string // the cloud-init seed volume
	uefiVars string // the VM's copy of OVMF's variable store
	console  string
	stopped  string // exists once Drover stopped the VM on purpose
}

func (d *Driver) paths(name string) vmPaths {
	dir := filepath.Join(d.root, name)
	return vmPaths{
		dir:      dir,
		metadata: filepath.Join(dir, "metadata.json"),
		qmp:      filepath.Join(dir, "qmp.sock"),
		agent:    filepath.Join(dir, "qga.sock"),
		pid:      filepath.Join(dir, "qemu.pid"),
		overlay:  filepath.Join(dir, "disk.qcow2"),
		seed:     filepath.Join(dir, "seed.iso"),
		uefiVars: filepath.Join(dir, "uefi-vars.fd"),
		console:  filepath.Join(dir, "console.log"),
		stopped:  filepath.Join(dir, "stopped"),
	}
}

// tempPrefix starts the names of directories a Create builds before renaming them into
// place, and goingPrefix those of entries a Destroy renamed out of the way to remove
// them; hypervisor.ValidName accepts neither.
const (
	tempPrefix  = ".create-"
	goingPrefix = ".destroy-"
)

func isTempName(name string) bool {
	return strings.HasPrefix(name, tempPrefix) || strings.HasPrefix(name, goingPrefix)
}

// readEntry reads and checks the record of the entry called name. Any reason the
// entry is not a VM Drover can manage is an error saying why.
func readEntry(root, name string) (record, error) {
	dir := filepath.Join(root, name)
	fi, err := os.Lstat(dir)
	if err != nil {
		return record{}, fmt.Errorf("state entry %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return record{}, fmt.Errorf("state entry %s: not a directory (not created by drover)", dir)
	}
	if !hypervisor.ValidName(name) {
		return record{}, fmt.Errorf("state entry %s: not a vm name drover uses", dir)
	}
	data, err := os.ReadFile(filepath.Join(dir, "metadata.json"))
	if errors.Is(err, os.ErrNotExist) {
		return record{}, fmt.Errorf("state entry %s: no metadata.json (not created by drover)", dir)
	}
	if err != nil {
		return record{}, fmt.Errorf("state entry %s: %w", dir, err)
	}
	rec, err := decodeRecord(data)
	if err != nil {
		return record{}, fmt.Errorf("state entry %s: metadata.json: %w", dir, err)
	}
	if rec.Name != name {
		return record{}, fmt.Errorf("state entry %s: metadata.json names vm %q", dir, rec.Name)
	}
	return rec, nil
}

// decodeRecord parses and checks a record. A record missing what Drover relies on is an
// error rather than a half-known VM.
func decodeRecord(data []byte) (record, error) {
	var rec record
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return record{}, fmt.Errorf("parse: %w", err)
	}
	var errs []error
	if rec.Format != recordFormat {
		errs = append(errs, fmt.Errorf("format %q, want %q", rec.Format, recordFormat))
	}
	if rec.Service == "" {
		errs = append(errs, errors.New("no service"))
	}
	if rec.SpecHash == "" {
		errs = append(errs, errors.New("no spec_hash"))
	}
	if rec.Created.IsZero() {
		errs = append(errs, errors.New("no created time"))
	}
	switch rec.NetworkMode {
	case hypervisor.NetworkUser:
		if rec.HostPort < 1 || rec.HostPort > 65535 {
			errs = append(errs, fmt.Errorf("host_port %d", rec.HostPort))
		}
	case hypervisor.NetworkBridge:
		if rec.Bridge == "" || rec.MAC == "" || !strings.HasPrefix(rec.Tap, tapPrefix) || len(rec.Tap) > 15 {
			errs = append(errs, fmt.Errorf("bridged with bridge %q, tap %q, mac %q", rec.Bridge, rec.Tap, rec.MAC))
		}
	default:
		errs = append(errs, fmt.Errorf("network_mode %q, want %q or %q", rec.NetworkMode, hypervisor.NetworkUser, hypervisor.NetworkBridge))
	}
	if rec.GuestPort < 1 || rec.GuestPort > 65535 {
		errs = append(errs, fmt.Errorf("guest_port %d", rec.GuestPort))
	}
	if err := errors.Join(errs...); err != nil {
		return record{}, err
	}
	rec.Created = rec.Created.UTC()
	return rec, nil
}

func encodeRecord(rec record) ([]byte, error) {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode metadata of %s: %w", rec.Name, err)
	}
	return append(data, '\n'), nil
}

// removeEntry removes a VM's directory with metadata.json last: until it goes the
// entry is still Drover's, so a Destroy interrupted midway is finished by the next.
// The directory leaves the VM's name before metadata.json goes, so at no instant is
// there a directory under a VM's name that does not say it is Drover's: what a kill
// leaves is either an entry with its metadata or a goingPrefix directory for Sweep.
func removeEntry(p vmPaths) error {
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove state entry: %w", err)
	}
	var errs []error
	for _, e := range entries {
		f := filepath.Join(p.dir, e.Name())
		if f == p.metadata {
			continue
		}
		if err := os.RemoveAll(f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove state entry: %w", err)
	}
	// os.Rename refuses an existing directory as the target, so a name some other
	// Destroy holds is never taken over.
	going := filepath.Join(filepath.Dir(p.dir), goingPrefix+filepath.Base(p.dir)+"-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
	if err := os.Rename(p.dir, going); err != nil {
		return fmt.Errorf("remove state entry: %w", err)
	}
	if err := os.RemoveAll(going); err != nil {
		return fmt.Errorf("remove state entry: %w", err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor"
)

// sweepMinAge is how old a leftover must be before Sweep removes it. Another Drover
// process's Create makes the overlay a moment before it defines the domain; this is
// far longer than that moment, so Sweep never takes a file from a Create in flight.
const sweepMinAge = time.Minute

// Sweep removes what a Drover killed mid-Create or mid-Destroy left in the state
// directory: overlays and console logs (with virtlogd's rotations) named after a VM
// for which no domain of that name exists, older than a minute. Names a Create or
// Destroy of this driver is working on are skipped. Nothing else is ever removed:
// other files, and files of any existing domain, Drover's or not, stay. It returns
// the paths it removed.
func (d *Driver) Sweep(ctx context.Context) ([]string, error) {
	return bounded(ctx, &d.inflight, func() ([]string, error) { return d.sweep(ctx) }, nil)
}

func (d *Driver) sweep(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", d.dir, err)
	}
	files := map[string][]string{} // vm name → its leftover candidates
	for _, e := range entries {
		// A seed's build directory (<vm>.cidata.iso.tmp-ws-*) is the one directory.
		if name, ok := leftoverOf(e.Name()); ok && (e.Type().IsRegular() || e.IsDir() && strings.Contains(e.Name(), seedName("")+".tmp-ws-")) {
			files[name] = append(files[name], e.Name())
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	var (
		removed []string
		errs    []error
	)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", d.dir, err)
		}
		unlock, ok := d.locks.TryLock(name)
		if !ok {
			continue
		}
		r, err := d.sweepVM(ctx, name, files[name])
		unlock()
		removed = append(removed, r...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(removed) > 0 {
		d.log.Info("swept leftovers of vms that no longer exist", "files", removed)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep %s: %w", d.dir, err)
	}
	return removed, nil
}

// sweepVM removes one VM's leftover files if no domain has its name. The caller holds
// the name's lock, so no Create of this driver defines it meanwhile.
func (d *Driver) sweepVM(ctx context.Context, name string, files []string) ([]string, error) {
	conn, err := d.connection(ctx)
	if err != nil {
		return nil, err
	}
	dom, err := conn.LookupDomainByName(name)
	if err == nil {
		dom.Free()
		return nil, nil
	}
	if !isVirErr(err, libvirt.ERR_NO_DOMAIN) {
		return nil, fmt.Errorf("look up domain %s: %w", name, err)
	}
	var (
		removed []string
		errs    []error
	)
	for _, f := range files {
		p := filepath.Join(d.dir, f)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !(fi.Mode().IsRegular() || fi.IsDir()) || d.now().Sub(fi.ModTime()) < sweepMinAge {
			continue
		}
		if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// leftoverOf says which VM a state directory file would belong to, if it is named as
// Create names the files it makes: <vm>.qcow2, <vm>.cidata.iso, <vm>.uefi-vars.fd,
// <vm>.console.log and the numbered copies virtlogd rotates the log into, and the
// temporary files of a seed being written (<vm>.cidata.iso.tmp-*).
func leftoverOf(file string) (string, bool) {
	name, ok := strings.CutSuffix(file, overlayName(""))
	if !ok {
		name, ok = strings.CutSuffix(file, seedName(""))
	}
	if !ok {
		name, ok = strings.CutSuffix(file, uefiVarsName(""))
	}
	if !ok {
		if i := strings.Index(file, seedName("")+".tmp-"); i > 0 {
			name, ok = file[:i], true
		}
	}
	if !ok {
		log := consoleLogName("")
		i := strings.Index(file, log)
		if i < 0 {
			return "", false
		}
		name = file[:i]
		if rot := file[i+len(log):]; rot != "" && !isRotation(rot) {
			return "", false
		}
	}
	// Names never hold a dot, so "a.qcow2.console.log" is nobody's.
	return name, hypervisor.ValidName(name)
}

// isRotation matches ".N", the suffix virtlogd gives rotated logs.
func isRotation(s string) bool {
	digits, ok := strings.CutPrefix(s, ".")
	if !ok || digits == "" {
		return false
	}
	return strings.Trim(digits, "0123456789") == ""
}

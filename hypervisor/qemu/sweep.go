package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-dev/drover/hypervisor"
)

// sweepMinAge is how old a leftover must be before Sweep removes it. Another Drover
// process on the same state directory is at most moments into a Create or Destroy
// when it leaves these behind; this is far longer, so Sweep never takes one in flight.
const sweepMinAge = time.Minute

// Sweep removes what a Drover killed mid-Create or mid-Destroy left in the state
// directory, older than a minute and not being worked on by this driver:
//   - Create's temporary directories (.create-<vm>-*) holding nothing but metadata;
//   - entries Destroy renamed to remove (.destroy-<vm>-*), holding at most metadata;
//   - VM entries whose metadata says Destroy had stopped them, whose QEMU is gone.
//
// Anything else, foreign and unreadable entries included, stays as it is (List
// reports those as problems). It returns the paths it removed.
func (d *Driver) Sweep(ctx context.Context) ([]string, error) {
	// Links before entries: a tap listed here was made after its entry, so the
	// entries read next name it.
	links, lerr := d.listOwnTaps()
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", d.root, err)
	}
	var (
		removed []string
		errs    []error
	)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", d.root, err)
		}
		name, kind := classifyEntry(e.Name())
		if kind == notLeftover || !e.IsDir() {
			continue
		}
		unlock, ok := d.locks.TryLock(name)
		if !ok {
			continue // a Create or Destroy of this driver is on it
		}
		gone, err := d.sweepEntry(filepath.Join(d.root, e.Name()), name, kind)
		unlock()
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			removed = append(removed, filepath.Join(d.root, e.Name()))
		}
	}
	if lerr != nil {
		errs = append(errs, lerr)
	} else if len(links) > 0 {
		taps, err := d.sweepTaps(links, d.tapsInUse(entries))
		removed = append(removed, taps...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(removed) > 0 {
		d.log.Info("swept leftovers of interrupted creates and destroys", "entries", removed)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep %s: %w", d.root, err)
	}
	return removed, nil
}

type leftoverKind int

const (
	notLeftover   leftoverKind = iota
	halfCreated                // a Create's temporary directory
	halfDestroyed              // an entry Destroy renamed to remove it
	vmEntry                    // a VM's entry, swept only if Destroy had stopped it
)

// classifyEntry says what an entry name would be if Drover made it, and for which VM.
func classifyEntry(entry string) (string, leftoverKind) {
	if hypervisor.ValidName(entry) {
		return entry, vmEntry
	}
	for _, k := range []struct {
		prefix string
		kind   leftoverKind
	}{{tempPrefix, halfCreated}, {goingPrefix, halfDestroyed}} {
		rest, ok := strings.CutPrefix(entry, k.prefix)
		if !ok {
			continue
		}
		// os.MkdirTemp appended "-" and a random number to the VM's name.
		i := strings.LastIndexByte(rest, '-')
		if i < 0 || strings.Trim(rest[i+1:], "0123456789") != "" || rest[i+1:] == "" || !hypervisor.ValidName(rest[:i]) {
			return "", notLeftover
		}
		return rest[:i], k.kind
	}
	return "", notLeftover
}

// sweepEntry removes one entry if it is an unmistakable leftover. The caller holds
// the VM name's lock.
func (d *Driver) sweepEntry(dir, name string, kind leftoverKind) (bool, error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, nil
	}
	if kind == vmEntry {
		rec, err := readEntry(d.root, name)
		if err != nil || !rec.Destroying {
			return false, nil // a VM, or not Drover's
		}
		p := d.paths(name)
		mfi, err := os.Stat(p.metadata)
		if err != nil || d.now().Sub(mfi.ModTime()) < sweepMinAge || processAlive(p) > 0 {
			return false, nil
		}
		if err := removeEntry(p); err != nil {
			return false, fmt.Errorf("finish destroying %s: %w", name, err)
		}
		return true, nil
	}

	if d.now().Sub(fi.ModTime()) < sweepMinAge {
		return false, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		switch n := e.Name(); {
		case n == "metadata.json" && e.Type().IsRegular():
			// Whatever a half-made entry holds is Drover's own, if it holds
			// nothing else; it names the VM of the directory's name.
			data, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return false, err
			}
			if rec, err := decodeRecord(data); err != nil || rec.Name != name {
				return false, nil
			}
		case strings.HasPrefix(n, ".metadata.json.tmp-") && e.Type().IsRegular():
		default:
			return false, nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("remove leftover %s: %w", dir, err)
	}
	return true, nil
}

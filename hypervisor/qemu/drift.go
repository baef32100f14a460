package qemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// drift compares a VM with what Create recorded: the running process's arguments with
// those Create started it with (a QEMU restarted by hand with other options), and the
// overlay with the golden image it was made over (a rebase, or a swapped file).
// pid is the VM's running QEMU, or 0.
func drift(rec record, pid int) []string {
	var out []string
	if pid > 0 && len(rec.Args) > 0 {
		// A process that exited since it was found has nothing to compare.
		if got, err := processArgs(pid); err == nil {
			out = append(out, argsDrift(rec.Args, got)...)
			out = append(out, unhardened(got)...)
		}
	}
	if cw := rec.CreatedWith; cw != nil && cw.Overlay != "" {
		switch backing, err := qcow2Backing(cw.Overlay); {
		case errors.Is(err, os.ErrNotExist):
			out = append(out, "disk removed: "+cw.Overlay)
		case err != nil:
			out = append(out, fmt.Sprintf("disk %s: cannot be read to compare: %v", cw.Overlay, err))
		case backing != cw.Disk:
			out = append(out, fmt.Sprintf("disk %s: backing file created as %s, now %s", cw.Overlay, orNone(cw.Disk), orNone(backing)))
		}
	}
	return out
}

// unhardened names what a running QEMU lacks of the protections Create now gives
// every VM: a VM started by an older Drover (or restarted by hand) keeps running as it
// was, so the operator is told to recreate it.
func unhardened(args []string) []string {
	var out []string
	for _, o := range parseOptions(args) {
		switch {
		case o.name == "-netdev" && strings.HasPrefix(o.value, "user,") && !slices.Contains(strings.Split(o.value, ","), "restrict=on"):
			out = append(out, "network: user networking not restricted (started by an older Drover): the guest can reach services on the host's 127.0.0.1")
		case o.name == "-chardev" && strings.HasPrefix(o.value, "file,") && strings.Contains(o.value, "id="+consoleDevice):
			out = append(out, "console: written to a file with no size cap (started by an older Drover)")
		}
	}
	return out
}

// processArgs is a process's command line without the binary.
func processArgs(pid int) ([]string, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	if len(args) == 0 {
		return nil, fmt.Errorf("pid %d: empty command line", pid)
	}
	return args[1:], nil
}

// isFlag reports the options Drover passes that take no value.
func isFlag(arg string) bool {
	switch arg {
	case "-nodefaults", "-no-user-config", "-daemonize", "-no-shutdown":
		return true
	}
	return false
}

// optionField names what an option carries, for the operator.
func optionField(name string) string {
	switch name {
	case "-smp":
		return "vcpus"
	case "-m":
		return "memory"
	case "-kernel":
		return "kernel"
	case "-initrd":
		return "initrd"
	case "-append":
		return "cmdline"
	case "-drive":
		return "disk"
	case "-netdev":
		return "network"
	case "-device":
		return "device"
	case "-accel":
		return "accelerator"
	case "-machine":
		return "machine"
	}
	return "qemu option " + name
}

// argsDrift says, option by option, how got differs from the arguments Create used.
func argsDrift(want, got []string) []string {
	w, g := parseOptions(want), parseOptions(got)
	var names []string
	for _, o := range append(slices.Clone(w), g...) {
		if !slices.Contains(names, o.name) {
			names = append(names, o.name)
		}
	}
	var out []string
	for _, name := range names {
		// Compared as rendered, so "-m 128" and "-m 128M" are the same memory.
		format := func(v string) string {
			if name == "-m" {
				return memoryOption(v)
			}
			if v == "" {
				return "set"
			}
			return v
		}
		was, now := optionValues(w, name, format), optionValues(g, name, format)
		removed, added := multisetDiff(was, now), multisetDiff(now, was)
		field := optionField(name)
		if len(removed) == 1 && len(added) == 1 {
			out = append(out, fmt.Sprintf("%s: created with %s, now %s", field, removed[0], added[0]))
			continue
		}
		for _, v := range removed {
			out = append(out, fmt.Sprintf("%s removed: %s", field, v))
		}
		for _, v := range added {
			out = append(out, fmt.Sprintf("%s added: %s", field, v))
		}
	}
	return out
}

type option struct{ name, value string }

// parseOptions pairs QEMU's arguments into options. Drover's valueless flags are
// known; any other argument starting with '-' is an option taking the next argument,
// unless that too starts with '-'.
func parseOptions(args []string) []option {
	var out []option
	for i := 0; i < len(args); i++ {
		a := args[i]
		if isFlag(a) || !strings.HasPrefix(a, "-") || i+1 == len(args) || strings.HasPrefix(args[i+1], "-") {
			out = append(out, option{name: a})
			continue
		}
		out = append(out, option{name: a, value: args[i+1]})
		i++
	}
	return out
}

func optionValues(opts []option, name string, format func(string) string) []string {
	var out []string
	for _, o := range opts {
		if o.name == name {
			out = append(out, format(o.value))
		}
	}
	return out
}

// multisetDiff is a minus b, counting repeats (QEMU takes -device many times).
func multisetDiff(a, b []string) []string {
	b = slices.Clone(b)
	var out []string
	for _, v := range a {
		if i := slices.Index(b, v); i >= 0 {
			b = slices.Delete(b, i, i+1)
			continue
		}
		out = append(out, v)
	}
	return out
}

// memoryOption renders -m's value ("128M", "1G", "256": MiB by default) in MiB.
func memoryOption(v string) string {
	num, unit := v, "M"
	if n := len(v); n > 0 && strings.ContainsRune("MGTmgt", rune(v[n-1])) {
		num, unit = v[:n-1], strings.ToUpper(v[n-1:])
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return v
	}
	switch unit {
	case "G":
		n <<= 10
	case "T":
		n <<= 20
	}
	return strconv.FormatUint(n, 10) + " MiB"
}

// qcow2Backing reads the backing file name from a qcow2 header: cheaper than
// qemu-img, and it needs no lock a running QEMU holds.
func qcow2Backing(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var hdr [20]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return "", fmt.Errorf("read qcow2 header: %w", err)
	}
	if !bytes.Equal(hdr[:4], []byte("QFI\xfb")) {
		return "", errors.New("not a qcow2 image")
	}
	off, size := binary.BigEndian.Uint64(hdr[8:16]), binary.BigEndian.Uint32(hdr[16:20])
	if off == 0 {
		return "", nil
	}
	// QEMU caps backing file names at 1023 bytes.
	if size > 1023 {
		return "", fmt.Errorf("qcow2 backing file name of %d bytes", size)
	}
	name := make([]byte, size)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return "", fmt.Errorf("read qcow2 backing file name: %w", err)
	}
	return string(name), nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

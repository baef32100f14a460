package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnsafeImage is returned by InspectGolden for a disk image Drover will not boot:
// anything but raw, or a qcow2 that names another file (a backing file or an external
// data file). Such an image would give the guest bytes nobody verified — a host file
// named by whoever wrote the image.
var ErrUnsafeImage = errors.New("unsafe disk image")

// Golden disk formats InspectGolden accepts.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
)

// InspectGolden decides a golden disk's format and refuses any image that could make
// QEMU read something other than its own bytes. Only raw and a self-contained qcow2
// pass; everything else is ErrUnsafeImage with the reason. The caller then states the
// returned format wherever the image is opened (`qemu-img create -F`, the domain's
// backing store), so QEMU never probes it.
//
// The format is read from the file's header by Drover itself, before any qemu-img runs:
// `qemu-img info` on an unknown file opens whatever the image names (a VMDK's extents,
// a qcow2's data file — a FIFO, a device, an NBD server), so it only ever runs with the
// format stated, on an image already known to name nothing. Its answer (bounded in
// time, memory and output) is then checked again.
func InspectGolden(ctx context.Context, qemuImg, path string) (format string, err error) {
	g, err := InspectGoldenDisk(ctx, qemuImg, path)
	return g.Format, err
}

// Golden is a golden disk InspectGolden accepted.
type Golden struct {
	Format      string // FormatRaw or FormatQCOW2
	VirtualSize int64  // bytes, as the guest sees the disk
}

// InspectGoldenDisk is InspectGolden that also reports the disk's virtual size, which
// a grown overlay (Spec.DiskSizeBytes) must not be below.
func InspectGoldenDisk(ctx context.Context, qemuImg, path string) (Golden, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Golden{}, fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	format, err := sniffFile(abs)
	if err != nil {
		return Golden{}, fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	// An absolute path never reads as a protocol ("nbd:", "json:") to qemu-img.
	out, err := runQEMUImg(ctx, qemuImg, "info", "--output=json", "-f", format, abs)
	if err != nil {
		return Golden{}, fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	size, err := checkInfo(out, format)
	if err != nil {
		return Golden{}, fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	return Golden{Format: format, VirtualSize: size}, nil
}

// OverlaySize is the virtual size to give the overlay of a VM made from spec over
// golden: 0 (the golden disk's own) unless the spec grows it. A size below the golden
// disk's is ErrInvalidSpec: shrinking would cut off the guest's filesystem.
func OverlaySize(spec Spec, golden Golden) (int64, error) {
	switch {
	case spec.DiskSizeBytes == 0:
		return 0, nil
	case spec.DiskSizeBytes < golden.VirtualSize:
		return 0, fmt.Errorf("%w: disk_size %s is below the golden disk's %s (%s): an overlay can grow a disk, never shrink it",
			ErrInvalidSpec, FormatSize(spec.DiskSizeBytes), FormatSize(golden.VirtualSize), spec.Disk)
	}
	return spec.DiskSizeBytes, nil
}

// FormatSize spells a byte count in the fleet file's units (GiB, MiB) when exact, else
// in bytes.
func FormatSize(n int64) string {
	switch {
	case n > 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// sniffFile reads the header of the regular file at path and classifies it.
func sniffFile(path string) (string, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: not a regular file (%s)", ErrUnsafeImage, fi.Mode().Type())
	}
	head := make([]byte, headerReadSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && n < len(head) && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read header: %w", err)
	}
	return sniff(head[:n])
}

// checkInfo re-checks what qemu-img reports for an image opened as format: it must
// agree on the format and name no other file.
func checkInfo(out []byte, format string) (virtualSize int64, err error) {
	var info struct {
		Format              string `json:"format"`
		VirtualSize         int64  `json:"virtual-size"`
		BackingFilename     string `json:"backing-filename"`
		FullBackingFilename string `json:"full-backing-filename"`
		FormatSpecific      struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("parse qemu-img info output: %w", err)
	}
	if info.Format != format {
		return 0, fmt.Errorf("qemu-img reports format %q for an image read as %s", info.Format, format)
	}
	if b := firstNonEmpty(info.FullBackingFilename, info.BackingFilename); b != "" {
		return 0, fmt.Errorf("%w: it has a backing file (%s); a golden image must be self-contained", ErrUnsafeImage, b)
	}
	if df := info.FormatSpecific.Data.DataFile; df != "" {
		return 0, fmt.Errorf("%w: qcow2 with an external data file (%s); a golden image must be self-contained", ErrUnsafeImage, df)
	}
	return info.VirtualSize, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

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
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	format, err = sniffFile(abs)
	if err != nil {
		return "", fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	// An absolute path never reads as a protocol ("nbd:", "json:") to qemu-img.
	out, err := runQEMUImg(ctx, qemuImg, "info", "--output=json", "-f", format, abs)
	if err != nil {
		return "", fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	if err := checkInfo(out, format); err != nil {
		return "", fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	return format, nil
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
func checkInfo(out []byte, format string) error {
	var info struct {
		Format              string `json:"format"`
		BackingFilename     string `json:"backing-filename"`
		FullBackingFilename string `json:"full-backing-filename"`
		FormatSpecific      struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("parse qemu-img info output: %w", err)
	}
	if info.Format != format {
		return fmt.Errorf("qemu-img reports format %q for an image read as %s", info.Format, format)
	}
	if b := firstNonEmpty(info.FullBackingFilename, info.BackingFilename); b != "" {
		return fmt.Errorf("%w: it has a backing file (%s); a golden image must be self-contained", ErrUnsafeImage, b)
	}
	if df := info.FormatSpecific.Data.DataFile; df != "" {
		return fmt.Errorf("%w: qcow2 with an external data file (%s); a golden image must be self-contained", ErrUnsafeImage, df)
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

package hypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
)

// imageInfo is the part of `qemu-img info --output=json` Drover reads.
type imageInfo struct {
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
}

// ProbeImage reads a golden disk's format with the qemu-img binary qemuImg (a path, or
// a name looked up in PATH). A golden image must stand alone: a backing file
// reference would make a verified image depend on bytes nobody verified.
func ProbeImage(ctx context.Context, qemuImg, path string) (format string, err error) {
	out, err := runQEMUImg(ctx, qemuImg, "info", "--output=json", path)
	if err != nil {
		return "", fmt.Errorf("inspect disk image %s: %w", path, err)
	}
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("inspect disk image %s: parse qemu-img output: %w", path, err)
	}
	if info.Format == "" {
		return "", fmt.Errorf("inspect disk image %s: qemu-img reported no format", path)
	}
	if info.BackingFilename != "" {
		return "", fmt.Errorf("inspect disk image %s: it has a backing file (%s); a golden image must be self-contained", path, info.BackingFilename)
	}
	return info.Format, nil
}

// CreateOverlay makes a qcow2 overlay over a golden image with the qemu-img binary
// qemuImg, so the golden image is never written and a VM's disk costs only what the
// guest changes. The backing format is spelled out so QEMU never probes the golden
// image (a raw image could pose as qcow2).
func CreateOverlay(ctx context.Context, qemuImg, overlay, backing, backingFmt string) error {
	if _, err := runQEMUImg(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-F", backingFmt, "-b", backing, overlay); err != nil {
		return fmt.Errorf("create overlay %s over %s: %w", overlay, backing, err)
	}
	return nil
}

func runQEMUImg(ctx context.Context, qemuImg string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuImg, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("qemu-img %s: %w: %s", args[0], err, msg)
		}
		return nil, fmt.Errorf("qemu-img %s: %w", args[0], err)
	}
	return stdout.Bytes(), nil
}

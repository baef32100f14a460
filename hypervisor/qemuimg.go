package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Bounds on every qemu-img Drover runs. A crafted image can make qemu-img allocate
// huge tables or spin on a corrupt header; these keep it from taking the host or a
// pass with it. A legitimate info or create takes milliseconds and a few MiB.
const (
	qemuImgTimeout   = 30 * time.Second
	qemuImgMaxMemory = 1 << 30 // address space, bytes (prlimit --as)
	qemuImgCPUTime   = 30      // seconds (prlimit --cpu)
	qemuImgMaxOutput = 1 << 20 // bytes of stdout read, and of stderr kept
)

// CreateOverlay makes a qcow2 overlay over a golden image with the qemu-img binary
// qemuImg, so the golden image is never written and a VM's disk costs only what the
// guest changes. The backing format is spelled out so QEMU never probes the golden
// image (a raw image could pose as qcow2); pass the format InspectGolden returned.
//
// size, when not 0, is the overlay's virtual size (OverlaySize): the guest sees a bigger
// disk whose new part costs nothing until written, and the golden image is still
// never copied, whatever its size.
func CreateOverlay(ctx context.Context, qemuImg, overlay, backing, backingFmt string, size int64) error {
	if backingFmt != FormatRaw && backingFmt != FormatQCOW2 {
		return fmt.Errorf("create overlay %s over %s: backing format %q: %w", overlay, backing, backingFmt, ErrUnsafeImage)
	}
	args := []string{"create", "-q", "-f", "qcow2", "-F", backingFmt, "-b", backing, overlay}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	if _, err := runQEMUImg(ctx, qemuImg, args...); err != nil {
		return fmt.Errorf("create overlay %s over %s: %w", overlay, backing, err)
	}
	return nil
}

// runQEMUImg runs qemu-img bounded in time, memory, CPU and output, with an empty
// environment (it needs none, and must not inherit Drover's Consul token).
func runQEMUImg(ctx context.Context, qemuImg string, args ...string) ([]byte, error) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		return nil, fmt.Errorf("qemu-img %s: prlimit (util-linux) is needed to bound qemu-img's memory: %w", args[0], err)
	}
	ctx, cancel := context.WithTimeout(ctx, qemuImgTimeout)
	defer cancel()
	stdout := &cappedBuffer{max: qemuImgMaxOutput}
	stderr := &cappedBuffer{max: qemuImgMaxOutput, truncate: true}
	cmd := exec.CommandContext(ctx, prlimit, append([]string{
		"--as=" + strconv.Itoa(qemuImgMaxMemory),
		"--cpu=" + strconv.Itoa(qemuImgCPUTime),
		"--", qemuImg}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (limit %v)", ctx.Err(), qemuImgTimeout)
	case stdout.over:
		err = fmt.Errorf("output larger than %d bytes", qemuImgMaxOutput)
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		return nil, fmt.Errorf("qemu-img %s: %w: %s", args[0], err, msg)
	}
	return nil, fmt.Errorf("qemu-img %s: %w", args[0], err)
}

// cappedBuffer keeps at most max bytes. Past that it fails the write, which stops
// os/exec reading (qemu-img then dies of SIGPIPE), or with truncate it drops the rest.
// The buffer is a field, not embedded: an embedded bytes.Buffer's ReadFrom would let
// io.Copy bypass Write and the cap.
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int
	truncate bool
	over     bool
}

var errOutputTooLarge = errors.New("output too large")

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.buf.Len()
	if len(p) <= room {
		return b.buf.Write(p)
	}
	b.over = true
	b.buf.Write(p[:max(room, 0)])
	if b.truncate {
		return len(p), nil
	}
	return 0, errOutputTooLarge
}

func (b *cappedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *cappedBuffer) String() string { return b.buf.String() }

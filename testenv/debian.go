package testenv

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/internal/atomicfile"
)

// debianImageScript builds the Debian image; its hash names the image, so a changed
// script gives a new image rather than a stale one.
//
//go:embed guest/debian-image.sh
var debianImageScript []byte

// debianImageTools are the commands the build runs, by the Debian package that has them.
var debianImageTools = map[string]string{
	"mmdebstrap": "mmdebstrap", "extlinux": "extlinux", "sfdisk": "fdisk",
	"mkfs.ext4": "e2fsprogs", "losetup": "mount", "qemu-img": "qemu-utils",
}

// DebianImage is a small bootable Debian 12 disk image (qcow2, BIOS boot through
// extlinux) with real cloud-init reading only a NoCloud seed, and systemd-networkd.
// Nothing serves in it until user-data says so: it has python3 (cloud-init's), so
// user-data can start `python3 -m http.server`.
func DebianImage(t testing.TB) File {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		Unavailable(t, "debian image: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	f, err := BuildDebianImage(ctx, cache, slog.New(slog.NewTextHandler(tbLogWriter{t}, nil)))
	if err != nil {
		Unavailable(t, "debian image: %v", err)
	}
	return f
}

// BuildDebianImage builds the Debian image under cacheDir/images unless it is there,
// from Debian's own packages (mmdebstrap from the apt mirror this machine uses), as root:
// the extlinux step mounts a loop device. The image and its sha256 are written
// atomically, so an interrupted build leaves nothing that looks finished; concurrent
// builds are serialised by the images' lock file.
func BuildDebianImage(ctx context.Context, cacheDir string, log *slog.Logger) (File, error) {
	dir := filepath.Join(cacheDir, "images")
	if err := mkdirReadable(dir); err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	sum := sha256.Sum256(debianImageScript)
	out := filepath.Join(dir, "debian-12-cloudinit-"+hex.EncodeToString(sum[:6])+".qcow2")
	if f, ok := cachedImage(out); ok {
		return f, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	defer unlock()
	if f, ok := cachedImage(out); ok {
		return f, nil // built by whoever held the lock
	}
	if os.Geteuid() != 0 {
		return File{}, fmt.Errorf("build debian image: needs root (mmdebstrap --mode=root and a loop mount)")
	}
	for tool, pkg := range debianImageTools {
		if _, err := exec.LookPath(tool); err != nil {
			return File{}, fmt.Errorf("build debian image: %s not found (install %s)", tool, pkg)
		}
	}
	work, err := os.MkdirTemp(dir, ".debian-")
	if err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	defer func() {
		// A build killed hard can leave mmdebstrap's /proc, /sys and /dev mounts in the
		// chroot: never remove through a mount point.
		if m := mountsUnder(work); len(m) > 0 {
			log.Error("debian image build left mounts; not removing its directory", "dir", work, "mounts", m)
			return
		}
		os.RemoveAll(work)
	}()
	script := filepath.Join(work, "debian-image.sh")
	if err := os.WriteFile(script, debianImageScript, 0o700); err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	tmpOut := filepath.Join(work, "image.qcow2")
	log.InfoContext(ctx, "building debian image (mmdebstrap, a few minutes)", "path", out)
	started := time.Now()
	logPath := filepath.Join(work, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, "/bin/bash", script, tmpOut, work)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
	// Output to a file, not a pipe: a build whose parent dies must not die of SIGPIPE
	// halfway through mmdebstrap, mounts and all. Cancelling asks the whole group to
	// stop (mmdebstrap and the script unmount on SIGTERM) and waits for it.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	if err := cmd.Run(); err != nil {
		o, _ := os.ReadFile(logPath)
		return File{}, fmt.Errorf("build debian image: %w: %s", err, tail(o))
	}
	if err := os.Chmod(tmpOut, 0o644); err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	f, err := hashFile(tmpOut)
	if err != nil {
		return File{}, err
	}
	// The digest first, then the image: an image is only ever seen with its digest.
	if err := atomicfile.Write(out+".sha256", []byte(f.SHA256+"\n"), 0o644); err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	if err := os.Rename(tmpOut, out); err != nil {
		return File{}, fmt.Errorf("build debian image: %w", err)
	}
	log.InfoContext(ctx, "built debian image", "path", out, "took", time.Since(started).Round(time.Second))
	return File{Path: out, SHA256: f.SHA256}, nil
}

// cachedImage is a built image with the digest recorded beside it, without hashing
// its hundreds of MiB again.
func cachedImage(p string) (File, bool) {
	if _, err := os.Stat(p); err != nil {
		return File{}, false
	}
	raw, err := os.ReadFile(p + ".sha256")
	if err != nil {
		return File{}, false
	}
	sum := strings.TrimSpace(string(raw))
	if len(sum) != 64 {
		return File{}, false
	}
	return File{Path: p, SHA256: sum}, true
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

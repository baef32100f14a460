package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/internal/atomicfile"
)

// GuestPort is the port the test guest serves GET /healthz on.
const GuestPort = 8080

// guestModules are the kernel modules the guest loads, in insmod order: Debian's cloud
// kernel builds virtio as modules, and insmod does not resolve dependencies. button and
// evdev let busybox acpid see the ACPI power button, so graceful shutdown works;
// virtio_blk lets the guest write its disk (GuestFillDisk).
var guestModules = []string{
	"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
	"failover", "net_failover", "virtio_net", "virtio_blk",
	"button", "evdev",
}

// busyboxPath is where Debian's busybox-static installs its binary.
const busyboxPath = "/bin/busybox"

// cloudKernelMeta is the Debian metapackage that depends on the current cloud kernel.
const cloudKernelMeta = "linux-image-cloud-amd64"

var (
	//go:embed guest/init
	guestInit []byte
	//go:embed guest/power-button
	guestPowerButton []byte
)

// File is a built image file and the sha256 a fleet file must name for it.
type File struct {
	Path   string
	SHA256 string
}

// URL is the file:// URL of the file, as a fleet file's image section takes it.
func (f File) URL() string {
	return (&url.URL{Scheme: "file", Path: f.Path}).String()
}

// GuestImages are the test golden images: Debian's cloud kernel and two initrds that
// boot it on QEMU user networking. Kernel+Initrd serves GET /healthz on GuestPort with
// the version from GuestCmdline; Kernel+UnhealthyInitrd boots the same way but never
// listens.
type GuestImages struct {
	Kernel          File
	Initrd          File
	UnhealthyInitrd File
	KernelVersion   string
}

// GuestCmdline is the kernel command line that makes a test guest report version on
// /healthz. The version must not contain whitespace, which would split the argument.
func GuestCmdline(version string) string {
	return "console=ttyS0 quiet drover.version=" + version
}

// GuestReach is the kernel command line word that makes a test guest, once its network
// is up, try to open a TCP connection to addr ("IP:PORT") and serve the outcome on GET
// /reach: "reached" if the peer sent the line "drover-reach" (then closed), else
// "unreachable". Append it to GuestCmdline's.
func GuestReach(addr string) string { return "drover.reach=" + addr }

// GuestFillDisk is the kernel command line word that makes a test guest, once it
// serves, write zeros over its whole first virtio disk (/dev/vda): tests use it to fill
// the host filesystem under the VM's overlay.
const GuestFillDisk = "drover.fill=vda"

// QEMUAccel is the accelerator a test guest should boot with: $DROVER_TESTENV_ACCEL when
// set (kvm or tcg), else kvm when /dev/kvm opens and is a full KVM, else tcg. A PVM host
// (kvm_pvm module, as on some cloud sandboxes) opens /dev/kvm but runs only PVM-enabled
// guest kernels: Debian's cloud kernel dies there with "KVM internal error".
func QEMUAccel() string {
	if a := os.Getenv("DROVER_TESTENV_ACCEL"); a != "" {
		return a
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg"
	}
	f.Close()
	return "kvm"
}

// Images builds (or finds cached) the test golden images for a test, stopping it with
// Unavailable when they cannot be built here.
func Images(t testing.TB) GuestImages {
	t.Helper()
	cache, err := CacheDir()
	if err != nil {
		Unavailable(t, "test images: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	imgs, err := BuildImages(ctx, cache, slog.New(slog.NewTextHandler(tbLogWriter{t}, nil)))
	if err != nil {
		Unavailable(t, "test images: %v", err)
	}
	return imgs
}

// tbLogWriter sends log lines to the test log, so they show only for failing or -v tests.
type tbLogWriter struct{ t testing.TB }

func (w tbLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// BuildImages builds the test golden images under cacheDir/images from Debian packages,
// building only what is missing: the kernel package is fetched with apt-get download
// (never installed), and each initrd's name carries a hash of its inputs so a changed
// init script or busybox gives a new file rather than a stale one. Files are written
// atomically and world-readable, since libvirt's QEMU runs as another user. Concurrent
// builds (parallel test binaries) are serialised by a lock file.
func BuildImages(ctx context.Context, cacheDir string, log *slog.Logger) (GuestImages, error) {
	dir := filepath.Join(cacheDir, "images")
	if err := mkdirReadable(dir); err != nil {
		return GuestImages{}, fmt.Errorf("build test images: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return GuestImages{}, fmt.Errorf("build test images: %w", err)
	}
	defer unlock()

	kver, err := kernelVersion(ctx, dir, log)
	if err != nil {
		return GuestImages{}, fmt.Errorf("build test images: %w", err)
	}
	kernel := filepath.Join(dir, "vmlinuz-"+kver)
	modDir := filepath.Join(dir, "modules-"+kver)
	if !kernelComplete(kernel, modDir) {
		if err := fetchKernel(ctx, dir, kver, log); err != nil {
			return GuestImages{}, fmt.Errorf("build test images: %w", err)
		}
	}
	busybox, err := staticBusybox(ctx, log)
	if err != nil {
		return GuestImages{}, fmt.Errorf("build test images: %w", err)
	}
	imgs := GuestImages{KernelVersion: kver}
	if imgs.Kernel, err = hashFile(kernel); err != nil {
		return GuestImages{}, fmt.Errorf("build test images: %w", err)
	}
	for _, v := range []struct {
		healthy bool
		out     *File
	}{{true, &imgs.Initrd}, {false, &imgs.UnhealthyInitrd}} {
		p, err := buildInitrd(dir, kver, modDir, busybox, v.healthy, log)
		if err != nil {
			return GuestImages{}, fmt.Errorf("build test images: %w", err)
		}
		if *v.out, err = hashFile(p); err != nil {
			return GuestImages{}, fmt.Errorf("build test images: %w", err)
		}
	}
	return imgs, nil
}

// kernelVersion is the cloud kernel's version (e.g. 6.1.0-56-cloud-amd64): the one
// already cached, so a later apt-get update does not silently change the images, else
// the one Debian's metapackage currently depends on.
func kernelVersion(ctx context.Context, dir string, log *slog.Logger) (string, error) {
	pinned := filepath.Join(dir, "kernel-version")
	if data, err := os.ReadFile(pinned); err == nil {
		if v := strings.TrimSpace(string(data)); validKernelVersion(v) {
			return v, nil
		}
	}
	v, err := aptKernelVersion(ctx)
	if err != nil {
		log.InfoContext(ctx, "no kernel in apt lists, running apt-get update", "err", err)
		if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
			return "", fmt.Errorf("apt-get update (needed to find %s): %w: %s", cloudKernelMeta, uerr, tail(out))
		}
		if v, err = aptKernelVersion(ctx); err != nil {
			return "", err
		}
	}
	if err := atomicfile.Write(pinned, []byte(v+"\n"), 0o644); err != nil {
		return "", err
	}
	return v, nil
}

var (
	kernelDepRe     = regexp.MustCompile(`(?m)^\s*Depends:\s*linux-image-(\S+-cloud-amd64)\s*$`)
	kernelVersionRe = regexp.MustCompile(`^[0-9][0-9a-z.+~-]*-cloud-amd64$`)
)

func validKernelVersion(v string) bool { return kernelVersionRe.MatchString(v) }

func aptKernelVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", cloudKernelMeta).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w: %s", cloudKernelMeta, err, tail(out))
	}
	return parseKernelDepends(out)
}

// parseKernelDepends finds the versioned kernel package in `apt-cache depends` output.
func parseKernelDepends(out []byte) (string, error) {
	m := kernelDepRe.FindSubmatch(out)
	if m == nil || !validKernelVersion(string(m[1])) {
		return "", fmt.Errorf("apt-cache depends %s: no linux-image-*-cloud-amd64 dependency in %q", cloudKernelMeta, tail(out))
	}
	return string(m[1]), nil
}

func kernelComplete(kernel, modDir string) bool {
	if _, err := os.Stat(kernel); err != nil {
		return false
	}
	for _, m := range guestModules {
		if _, err := os.Stat(filepath.Join(modDir, m+".ko")); err != nil {
			return false
		}
	}
	return true
}

// fetchKernel downloads the kernel package and extracts only vmlinuz and the guest's
// modules from it, streaming the package's file tree rather than unpacking 100 MB.
func fetchKernel(ctx context.Context, dir, kver string, log *slog.Logger) error {
	pkg := "linux-image-" + kver
	tmp, err := os.MkdirTemp(dir, ".deb-")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	log.InfoContext(ctx, "downloading kernel package", "package", pkg)
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, tail(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want 1 .deb, got %d", pkg, len(debs))
	}

	modDir := filepath.Join(dir, "modules-"+kver)
	if err := mkdirReadable(modDir); err != nil {
		return fmt.Errorf("fetch %s: %w", pkg, err)
	}
	wanted := map[string]bool{}
	for _, m := range guestModules {
		wanted[m] = true
	}
	found := map[string]bool{}
	var gotKernel bool

	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", debs[0])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("dpkg-deb %s: %w", pkg, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb %s: %w", pkg, err)
	}
	extractErr := func() error {
		tr := tar.NewReader(stdout)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", pkg, err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			name := path.Clean(strings.TrimPrefix(h.Name, "./"))
			switch {
			case name == "boot/vmlinuz-"+kver:
				data, err := io.ReadAll(tr)
				if err != nil {
					return fmt.Errorf("read %s from %s: %w", name, pkg, err)
				}
				if err := atomicfile.Write(filepath.Join(dir, "vmlinuz-"+kver), data, 0o644); err != nil {
					return err
				}
				gotKernel = true
			case strings.Contains(name, "lib/modules/"+kver+"/"):
				mod, compressed := moduleName(path.Base(name))
				if !wanted[mod] {
					continue
				}
				data, err := io.ReadAll(tr)
				if err != nil {
					return fmt.Errorf("read %s from %s: %w", name, pkg, err)
				}
				if compressed {
					if data, err = unxz(ctx, data); err != nil {
						return fmt.Errorf("decompress %s from %s: %w", name, pkg, err)
					}
				}
				if err := atomicfile.Write(filepath.Join(modDir, mod+".ko"), data, 0o644); err != nil {
					return err
				}
				found[mod] = true
			}
		}
	}()
	// Drain so dpkg-deb never blocks on a full pipe after an early return.
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	if extractErr != nil {
		return extractErr
	}
	if waitErr != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", debs[0], waitErr, tail(stderr.Bytes()))
	}
	if !gotKernel {
		return fmt.Errorf("fetch %s: no boot/vmlinuz-%s in the package", pkg, kver)
	}
	for _, m := range guestModules {
		if !found[m] {
			return fmt.Errorf("fetch %s: module %s not in the package (built in or renamed?)", pkg, m)
		}
	}
	log.InfoContext(ctx, "kernel extracted", "version", kver, "modules", len(found))
	return nil
}

// moduleName splits a module file name into the module and whether it is xz-compressed
// (Debian 12 ships plain .ko; later releases compress).
func moduleName(base string) (string, bool) {
	if m, ok := strings.CutSuffix(base, ".ko.xz"); ok {
		return m, true
	}
	if m, ok := strings.CutSuffix(base, ".ko"); ok {
		return m, false
	}
	return "", false
}

func unxz(ctx context.Context, data []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "xz", "-dc")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("xz -dc: %w: %s", err, tail(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// staticBusybox returns the bytes of a statically linked busybox, installing
// busybox-static if there is none: the initramfs has no libc to load a dynamic one.
func staticBusybox(ctx context.Context, log *slog.Logger) ([]byte, error) {
	if _, err := os.Stat(busyboxPath); errors.Is(err, os.ErrNotExist) {
		log.InfoContext(ctx, "installing busybox-static")
		cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "busybox-static")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get install busybox-static: %w: %s", err, tail(out))
		}
	}
	if err := checkStatic(busyboxPath); err != nil {
		return nil, fmt.Errorf("%w (install busybox-static)", err)
	}
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	return data, nil
}

// checkStatic fails unless the ELF binary at p has no program interpreter.
func checkStatic(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return nil
}

// buildInitrd writes the healthy or unhealthy initrd unless a file with the same
// inputs exists, and returns its path.
func buildInitrd(dir, kver, modDir string, busybox []byte, healthy bool, log *slog.Logger) (string, error) {
	variant := "unhealthy"
	healthyFlag := "0"
	if healthy {
		variant, healthyFlag = "healthy", "1"
	}
	conf := fmt.Sprintf("port=%d\nmodules=%q\nhealthy=%s\n", GuestPort, strings.Join(guestModules, " "), healthyFlag)
	mods := make([][]byte, len(guestModules))
	for i, m := range guestModules {
		data, err := os.ReadFile(filepath.Join(modDir, m+".ko"))
		if err != nil {
			return "", fmt.Errorf("build %s initrd: %w", variant, err)
		}
		mods[i] = data
	}

	h := sha256.New()
	for _, part := range append([][]byte{guestInit, guestPowerButton, []byte(conf), busybox}, mods...) {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	out := filepath.Join(dir, fmt.Sprintf("initrd-%s-%s-%s.cpio.gz", variant, kver, hex.EncodeToString(h.Sum(nil))[:12]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // zero header: no name or mtime, so builds are reproducible
	cw := &newcWriter{w: zw}
	steps := []func() error{
		func() error { return cw.dir("bin") },
		func() error { return cw.file("bin/busybox", 0o755, busybox) },
		func() error { return cw.symlink("bin/sh", "busybox") },
		func() error { return cw.dir("dev") },
		// The kernel opens /dev/console for init before devtmpfs is mounted.
		func() error { return cw.charDev("dev/console", 0o600, 5, 1) },
		func() error { return cw.dir("proc") },
		func() error { return cw.dir("sys") },
		func() error { return cw.dir("tmp") },
		func() error { return cw.dir("etc") },
		func() error { return cw.dir("etc/drover") },
		func() error { return cw.file("etc/drover/guest.conf", 0o644, []byte(conf)) },
		func() error { return cw.dir("etc/acpi") },
		func() error { return cw.dir("etc/acpi/PWRF") },
		func() error { return cw.file("etc/acpi/PWRF/00000080", 0o755, guestPowerButton) },
		func() error { return cw.dir("lib") },
		func() error { return cw.dir("lib/modules") },
	}
	for i, m := range guestModules {
		steps = append(steps, func() error { return cw.file("lib/modules/"+m+".ko", 0o644, mods[i]) })
	}
	steps = append(steps,
		func() error { return cw.file("init", 0o755, guestInit) },
		cw.close,
		zw.Close,
	)
	for _, step := range steps {
		if err := step(); err != nil {
			return "", fmt.Errorf("build %s initrd: %w", variant, err)
		}
	}
	if err := atomicfile.Write(out, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("build %s initrd: %w", variant, err)
	}
	log.Info("built initrd", "variant", variant, "path", out, "bytes", buf.Len())
	return out, nil
}

func hashFile(p string) (File, error) {
	f, err := os.Open(p)
	if err != nil {
		return File{}, fmt.Errorf("hash %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return File{}, fmt.Errorf("hash %s: %w", p, err)
	}
	return File{Path: p, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// mkdirReadable creates dir with mode 0755 regardless of the umask, since libvirt's
// QEMU user must traverse it.
func mkdirReadable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// lockFile takes an exclusive flock on p, polling so ctx can cancel the wait.
func lockFile(ctx context.Context, p string) (unlock func(), err error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, ctx.Err())
		case <-tick.C:
		}
	}
}

// tail is the end of a command's output, enough to explain a failure in an error.
func tail(out []byte) string {
	s := strings.TrimSpace(string(out))
	if len(s) > 400 {
		s = "…" + s[len(s)-400:]
	}
	return s
}

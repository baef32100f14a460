package sources

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// A fleet file is written by everyone with commit rights, so a file:// URL must not be
// a way to read the host: only regular files under a directory the operator names
// (--image-root) are read, and the checks below are done on what is actually opened.

// imageRoot is one directory file:// images may come from, as configured and with its
// symlinks resolved (a URL may spell either).
type imageRoot struct {
	dir, real string
}

func newImageRoots(dirs []string) ([]imageRoot, error) {
	var roots []imageRoot
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("image root %s: %w", d, err)
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("image root %s: %w", d, err)
		}
		info, err := os.Stat(real)
		if err != nil {
			return nil, fmt.Errorf("image root %s: %w", d, err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("image root %s: not a directory", d)
		}
		roots = append(roots, imageRoot{dir: abs, real: real})
	}
	return roots, nil
}

// rootsAvoid refuses a root that holds the cache dir: it would hold the state dir
// beside it too, and a commit could copy another VM's disk overlay into its image.
func rootsAvoid(roots []imageRoot, cacheDir string) error {
	real := cacheDir
	if r, err := filepath.EvalSymlinks(filepath.Dir(cacheDir)); err == nil {
		real = filepath.Join(r, filepath.Base(cacheDir))
	}
	for _, p := range []string{cacheDir, real} {
		if r, _, ok := within(roots, p, false); ok {
			return fmt.Errorf("image root %s holds the image cache %s and the state beside it (VM disks): give a directory of images only", r.dir, cacheDir)
		}
	}
	return nil
}

// within returns the root that holds p and p relative to it.
func within(roots []imageRoot, p string, real bool) (imageRoot, string, bool) {
	for _, r := range roots {
		for _, dir := range []string{r.dir, r.real} {
			if real && dir != r.real {
				continue
			}
			if rel, ok := strings.CutPrefix(p, dir+string(filepath.Separator)); ok && rel != "" {
				return r, rel, true
			}
			if dir == "/" && len(p) > 1 {
				return r, p[1:], true
			}
		}
	}
	return imageRoot{}, "", false
}

// checkFilePath refuses, without touching the file system, a path that is not
// lexically inside a root: nothing about files elsewhere (not even whether they exist)
// can be learnt through an image URL.
func (c *ImageCache) checkFilePath(rawURL, p string) error {
	if len(c.roots) == 0 {
		return refused(rawURL, "file:// images are read only from directories the operator allows; none is (pass --image-root DIR)")
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		return refused(rawURL, "file path %s contains '..'", p)
	}
	if _, _, ok := within(c.roots, filepath.Clean(p), false); !ok {
		return refused(rawURL, "%s is not under an image root (%s); pass --image-root to allow its directory", p, c.rootList())
	}
	return nil
}

func (c *ImageCache) rootList() string {
	dirs := make([]string, len(c.roots))
	for i, r := range c.roots {
		dirs[i] = r.dir
	}
	return strings.Join(dirs, ", ")
}

// pseudoFS are file systems whose "regular files" are views of the kernel or of
// processes (/proc/self/environ stats as a regular file): never an image.
var pseudoFS = map[int64]string{
	0x9fa0:     "proc",
	0x62656572: "sysfs",
	0x64626720: "debugfs",
	0x74726163: "tracefs",
	0x73636673: "securityfs",
	0x27e0eb:   "cgroup",
	0x63677270: "cgroup2",
	0x62656570: "configfs",
	0xde5e81e4: "efivarfs",
	0xcafe4a11: "bpf",
	0x1cd1:     "devpts",
}

// openFile opens p for reading if it is a regular file inside a root, following
// symlinks only where they stay inside it. It never blocks on a FIFO or device: the
// open is non-blocking and whatever is not a regular file is refused before a read.
func (c *ImageCache) openFile(rawURL, p string) (*os.File, int64, error) {
	if err := c.checkFilePath(rawURL, p); err != nil {
		return nil, 0, err
	}
	p = filepath.Clean(p)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, err
		}
		return nil, 0, refused(rawURL, "resolve %s: %v", p, err)
	}
	root, rel, ok := within(c.roots, real, true)
	if !ok {
		return nil, 0, refused(rawURL, "%s resolves to %s, outside every image root (%s)", p, real, c.rootList())
	}
	// Opened through the root, so a symlink or directory swapped in since EvalSymlinks
	// cannot lead outside it either.
	r, err := os.OpenRoot(root.real)
	if err != nil {
		return nil, 0, fmt.Errorf("image root %s: %w", root.dir, err)
	}
	defer r.Close()
	if info, err := r.Lstat(rel); err == nil && !info.Mode().IsRegular() {
		return nil, 0, refused(rawURL, "%s is not a regular file (%s)", p, kind(info.Mode()))
	}
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, err
		}
		return nil, 0, refused(rawURL, "open %s: %v", p, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = refused(rawURL, "%s is not a regular file (%s)", p, kind(info.Mode()))
	}
	if err == nil {
		var st syscall.Statfs_t
		if err = syscall.Fstatfs(int(f.Fd()), &st); err == nil {
			if name, bad := pseudoFS[int64(st.Type)]; bad {
				err = refused(rawURL, "%s is on %s, not a disk file system", p, name)
			}
		}
	}
	if err == nil && info.Size() > c.maxSize {
		err = refused(rawURL, "%s is %d bytes, more than the image size limit %d (--image-max-size)", p, info.Size(), c.maxSize)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, info.Size(), nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	}
	return m.Type().String()
}

package testenv

import (
	"fmt"
	"io"
	"strings"
)

// newcWriter writes a cpio archive in the "newc" format the kernel unpacks as an
// initramfs. Writing it ourselves lets every entry be owned by root with a fixed mtime
// without fakeroot, and makes the archive byte-for-byte reproducible.
type newcWriter struct {
	w   io.Writer
	ino uint32
}

// cpio mode bits for the entry types an initramfs needs.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

func (c *newcWriter) dir(name string) error { return c.entry(name, cpioDir|0o755, nil, 0, 0) }

func (c *newcWriter) file(name string, perm uint32, data []byte) error {
	return c.entry(name, cpioFile|perm, data, 0, 0)
}

func (c *newcWriter) symlink(name, target string) error {
	return c.entry(name, cpioSymlink|0o777, []byte(target), 0, 0)
}

func (c *newcWriter) charDev(name string, perm, major, minor uint32) error {
	return c.entry(name, cpioCharDev|perm, nil, major, minor)
}

// close writes the trailer entry that ends the archive.
func (c *newcWriter) close() error { return c.entry("TRAILER!!!", 0, nil, 0, 0) }

func (c *newcWriter) entry(name string, mode uint32, data []byte, rmajor, rminor uint32) error {
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio entry %q: invalid name", name)
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("write cpio entry %s: %w", name, err)
	}
	return nil
}

// pad4 pads b with NULs to a multiple of 4 bytes; each entry starts aligned, so the
// offset within the entry is the offset within the archive modulo 4.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

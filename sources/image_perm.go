package sources

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"
)

// Cached images are copies of what commits named and may hold what a guest should
// see and no host user should: no one but Drover and the hypervisor's QEMU reads them.
// With a group (QEMU's: kvm on Debian, where libvirt runs QEMU as libvirt-qemu:kvm)
// files are 0640 and directories 0750, both of that group. Without one, files are 0600
// and directories 0711: QEMU started by Drover itself runs as Drover's user, and
// libvirt's DAC driver (dynamic_ownership, on by default) hands each kernel, initrd and
// disk to QEMU's user while a VM runs; it does not relabel directories, hence 0711.

// DefaultImageGroup is the group the cache is shared with when ImageCacheConfig.Group
// is empty and a group of this name exists.
const DefaultImageGroup = "kvm"

// NoImageGroup as ImageCacheConfig.Group shares the cache with no group.
const NoImageGroup = "none"

// cachePerm is the ownership and modes of the cache tree.
type cachePerm struct {
	gid       int // -1: leave the group alone
	file, dir fs.FileMode
}

func resolveGroup(name, probeDir string) (cachePerm, string, error) {
	none := cachePerm{gid: -1, file: 0o600, dir: 0o711}
	if name == NoImageGroup {
		return none, "", nil
	}
	explicit := name != ""
	if !explicit {
		name = DefaultImageGroup
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if g, err = user.LookupGroupId(name); err != nil {
			if explicit {
				return cachePerm{}, "", fmt.Errorf("image cache group %q: %w", name, err)
			}
			return none, "", nil
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return cachePerm{}, "", fmt.Errorf("image cache group %q: gid %q: %w", name, g.Gid, err)
	}
	// Only root or a member may give files to a group: find out now, not per image.
	if err := os.Chown(probeDir, -1, gid); err != nil {
		if explicit {
			return cachePerm{}, "", fmt.Errorf("image cache group %q: %w (Drover must run as root or be a member of it)", name, err)
		}
		return none, "", nil
	}
	return cachePerm{gid: gid, file: 0o640, dir: 0o750}, g.Name, nil
}

// apply sets the cache's group and mode on path, tightening what an older Drover
// left world-readable. A file Drover does not own is left alone: libvirt's DAC driver
// has handed it to QEMU's user for a running VM, remembers what it set, and refuses to
// start the next VM on it ("Setting different DAC user or group … already in use") if
// its group changed meanwhile. It is tightened once libvirt has given it back.
func (p cachePerm) apply(path string, info fs.FileInfo) error {
	mode := p.file
	if info.IsDir() {
		mode = p.dir
	} else if fileUid(info) != os.Geteuid() {
		return nil
	}
	if p.gid >= 0 && fileGid(info) != p.gid {
		if err := os.Lchown(path, -1, p.gid); err != nil {
			return err
		}
	}
	if info.Mode().Perm() != mode {
		return os.Chmod(path, mode)
	}
	return nil
}

// touch records a use of a cached image for Collect (its mtime) and tightens its
// ownership and mode.
func (p cachePerm) touch(path string, now time.Time) error {
	info, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if err := p.apply(path, info); err != nil {
		return err
	}
	return os.Chtimes(path, time.Time{}, now)
}

func fileGid(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}

func fileUid(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

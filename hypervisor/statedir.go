package hypervisor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotTraversable is returned by CheckTraversable for a directory the user cannot
// search.
var ErrNotTraversable = errors.New("directory not traversable")

// CheckTraversable reports the first directory on the way to dir (dir included) that
// user cannot traverse, with the fix. libvirt runs QEMU as its own user (libvirt-qemu
// on Debian), which must reach every image and overlay under Drover's state directory;
// a directory made by mktemp -d (0700) or a home directory stops it, and every VM then
// fails at start with "Permission denied" after its images were fetched. Checking the
// permission bits (and POSIX ACLs) for user's ids finds that at start-up, without
// running anything as that user.
//
// user is a user name, or libvirt's numeric forms: "+uid", or "+uid:+gid" as in its
// DAC security label. The user's supplementary groups count too, as they do for QEMU.
func CheckTraversable(dir, user string) error {
	uid, gids, err := lookupIDs(user)
	if err != nil {
		return fmt.Errorf("check %s is traversable by %s: %w", dir, user, err)
	}
	if uid == 0 {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("check %s is traversable by %s: %w", dir, user, err)
	}
	paths := []string{abs}
	// A symlink on the way is followed: the directories it leads to count as well.
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for _, d := range ancestors(p) {
			ok, err := canTraverse(d, uid, gids)
			if err != nil {
				return fmt.Errorf("check %s is traversable by %s: %w", dir, user, err)
			}
			if !ok {
				who := userName(user, uid)
				return fmt.Errorf("%w: user %s cannot traverse %s, on the way to %s; QEMU runs as %s and must reach the images and disks in there: "+
					"run `chmod o+x %s` (or `setfacl -m u:%s:x %s`), or choose a --state-dir it can reach (e.g. /var/lib/drover)",
					ErrNotTraversable, who, d, abs, who, d, who, d)
			}
		}
	}
	return nil
}

// ancestors lists "/" down to p, p included.
func ancestors(p string) []string {
	var out []string
	for d := filepath.Clean(p); ; d = filepath.Dir(d) {
		out = append(out, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	slices.Reverse(out)
	return out
}

func canTraverse(dir string, uid int, gids []int) (bool, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false, fmt.Errorf("%s: no owner information", dir)
	}
	perm := uint32(fi.Mode().Perm())
	if acl, err := readACL(dir); err == nil && acl != nil {
		return acl.allows(uid, gids, int(st.Uid), int(st.Gid), 1), nil
	}
	return modeAllows(perm, int(st.Uid), int(st.Gid), uid, gids, 1), nil
}

// modeAllows applies permission bits as the kernel does: the owner's bits alone for
// the owner, else the group's for a member, else the others'. want is 4, 2 or 1 (rwx).
func modeAllows(perm uint32, ownerUID, ownerGID, uid int, gids []int, want uint32) bool {
	switch {
	case uid == ownerUID:
		return perm>>6&want == want
	case slices.Contains(gids, ownerGID):
		return perm>>3&want == want
	default:
		return perm&want == want
	}
}

// posixACL is a directory's access ACL (system.posix_acl_access).
type posixACL struct {
	userObj, groupObj, other, mask uint16
	hasMask                        bool
	users, groups                  map[int]uint16
}

// Tags of the kernel's ACL xattr format (include/uapi/linux/posix_acl_xattr.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// readACL returns dir's access ACL, or nil when it has none beyond its mode bits.
func readACL(dir string) (*posixACL, error) {
	buf := make([]byte, 4096)
	n, err := syscall.Getxattr(dir, "system.posix_acl_access", buf)
	if err != nil {
		return nil, err // ENODATA: none; ENOTSUP: no ACLs here
	}
	buf = buf[:n]
	if len(buf) < 4 || binary.LittleEndian.Uint32(buf) != 2 || (len(buf)-4)%8 != 0 {
		return nil, fmt.Errorf("%s: unreadable ACL", dir)
	}
	acl := &posixACL{users: map[int]uint16{}, groups: map[int]uint16{}}
	for e := buf[4:]; len(e) >= 8; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), int(binary.LittleEndian.Uint32(e[4:]))
		switch tag {
		case aclUserObj:
			acl.userObj = perm
		case aclUser:
			acl.users[id] = perm
		case aclGroupObj:
			acl.groupObj = perm
		case aclGroup:
			acl.groups[id] = perm
		case aclMask:
			acl.mask, acl.hasMask = perm, true
		case aclOther:
			acl.other = perm
		}
	}
	return acl, nil
}

// allows follows the access check algorithm of acl(5).
func (a *posixACL) allows(uid int, gids []int, ownerUID, ownerGID int, want uint16) bool {
	masked := func(p uint16) bool {
		if a.hasMask {
			p &= a.mask
		}
		return p&want == want
	}
	if uid == ownerUID {
		return a.userObj&want == want
	}
	if p, ok := a.users[uid]; ok {
		return masked(p)
	}
	member := false
	for _, g := range gids {
		p, ok := a.groups[g]
		if g == ownerGID {
			p, ok = a.groupObj, true
		}
		if ok {
			member = true
			if masked(p) {
				return true
			}
		}
	}
	if member {
		return false
	}
	return a.other&want == want
}

// lookupIDs resolves a user as libvirt's qemu.conf and DAC labels name one.
func lookupIDs(name string) (uid int, gids []int, err error) {
	u, g, hasGroup := strings.Cut(name, ":")
	if n, ok := strings.CutPrefix(u, "+"); ok {
		if uid, err = strconv.Atoi(n); err != nil || uid < 0 {
			return 0, nil, fmt.Errorf("user %q: want a name, +uid or +uid:+gid", name)
		}
	}
	if hasGroup {
		n, ok := strings.CutPrefix(g, "+")
		gid, err := strconv.Atoi(n)
		if !ok || err != nil || gid < 0 || !strings.HasPrefix(u, "+") {
			return 0, nil, fmt.Errorf("user %q: want a name, +uid or +uid:+gid", name)
		}
		gids = append(gids, gid)
	}
	var pw *user.User
	if strings.HasPrefix(u, "+") {
		// A uid with no passwd entry has no more groups than the label gives.
		pw, _ = user.LookupId(strconv.Itoa(uid))
	} else {
		if pw, err = user.Lookup(u); err != nil {
			return 0, nil, fmt.Errorf("look up user: %w", err)
		}
		if uid, err = strconv.Atoi(pw.Uid); err != nil {
			return 0, nil, fmt.Errorf("user %s: uid %q", u, pw.Uid)
		}
	}
	if pw != nil {
		ids, _ := pw.GroupIds() // the primary group and the supplementary ones
		if !hasGroup {
			ids = append([]string{pw.Gid}, ids...)
		}
		for _, id := range ids {
			if g, err := strconv.Atoi(id); err == nil && !slices.Contains(gids, g) {
				gids = append(gids, g)
			}
		}
	}
	return uid, gids, nil
}

// userName names the user as an operator would: by name when it has one.
func userName(name string, uid int) string {
	if !strings.HasPrefix(name, "+") {
		return name
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

package hypervisor_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
)

// openTempDir is a temporary directory whose ancestors others can traverse (the
// testing package makes its parent 0700), with the mode given.
func openTempDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mkdir(t *testing.T, p string, mode os.FileMode, uid, gid int) string {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// setACL gives dir an access ACL: the owner rwx, named users x, group and others none.
func setACL(t *testing.T, dir string, users ...int) {
	t.Helper()
	entry := func(tag, perm uint16, id uint32) []byte {
		return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, tag), perm), id)
	}
	const undefined = 0xffffffff
	buf := binary.LittleEndian.AppendUint32(nil, 2)
	buf = append(buf, entry(0x01, 7, undefined)...)
	for _, u := range users {
		buf = append(buf, entry(0x02, 1, uint32(u))...)
	}
	buf = append(buf, entry(0x04, 0, undefined)...)
	buf = append(buf, entry(0x10, 1, undefined)...)
	buf = append(buf, entry(0x20, 0, undefined)...)
	if err := syscall.Setxattr(dir, "system.posix_acl_access", buf, 0); err != nil {
		t.Skipf("cannot set a POSIX ACL on %s: %v", dir, err)
	}
}

func TestCheckTraversable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give directories other owners")
	}
	const uid, gid = 12345, 23456
	open := openTempDir(t, 0o755)
	private := openTempDir(t, 0o700) // as mktemp -d makes it
	inPrivate := mkdir(t, filepath.Join(private, "state"), 0o755, 0, 0)
	groupOnly := mkdir(t, filepath.Join(open, "group-only"), 0o710, 0, gid)
	ownerOnly := mkdir(t, filepath.Join(open, "owner-only"), 0o700, uid, 0)
	// The owner's bits alone apply to the owner, however open the others' are.
	ownerDenied := mkdir(t, filepath.Join(open, "owner-denied"), 0o677, uid, 0)
	acl := mkdir(t, filepath.Join(open, "acl"), 0o700, 0, 0)
	setACL(t, acl, uid)
	link := filepath.Join(open, "link")
	if err := os.Symlink(inPrivate, link); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, dir, user string
		wantBlocked     string // the directory the error must name; "" for no error
	}{
		{"open directory", open, "nobody", ""},
		{"0700 directory as mktemp -d makes it", private, "nobody", private},
		{"0755 directory inside a 0700 one", inPrivate, "nobody", private},
		{"libvirt's default user, 0700", private, "libvirt-qemu", private},
		{"root traverses everything", private, "+0", ""},
		{"group member", groupOnly, "+12345:+23456", ""},
		{"not in the group", groupOnly, "+12345:+23457", groupOnly},
		{"owner", ownerOnly, "+12345", ""},
		{"owner without x, others with", ownerDenied, "+12345", ownerDenied},
		{"acl names the user", acl, "+12345", ""},
		{"acl names another user", acl, "+12346", acl},
		{"symlink into a 0700 directory", link, "nobody", private},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.user == "libvirt-qemu" {
				if _, err := os.Stat("/etc/libvirt"); err != nil {
					t.Skip("libvirt not installed")
				}
			}
			err := hypervisor.CheckTraversable(tt.dir, tt.user)
			if tt.wantBlocked == "" {
				if err != nil {
					t.Fatalf("CheckTraversable(%s, %s): want nil, got %v", tt.dir, tt.user, err)
				}
				return
			}
			if !errors.Is(err, hypervisor.ErrNotTraversable) {
				t.Fatalf("CheckTraversable(%s, %s): want ErrNotTraversable, got %v", tt.dir, tt.user, err)
			}
			for _, want := range []string{"cannot traverse " + tt.wantBlocked + ",", "chmod o+x " + tt.wantBlocked, "--state-dir"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("CheckTraversable(%s, %s): want the error to contain %q, got %v", tt.dir, tt.user, want, err)
				}
			}
		})
	}
}

func TestCheckTraversableBadUser(t *testing.T) {
	for _, user := range []string{"no-such-user-drover", "+x", "+1:2", "a:+1", "+-1"} {
		err := hypervisor.CheckTraversable(t.TempDir(), user)
		if err == nil || errors.Is(err, hypervisor.ErrNotTraversable) || !strings.Contains(err.Error(), user) {
			t.Errorf("CheckTraversable(user %q): want an error naming the user, got %v", user, err)
		}
	}
}

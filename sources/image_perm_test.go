package sources

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// cacheFromRoot is a cache of the given group that reads file:// images from a new
// root, and an artifact there.
func cacheFromRoot(t *testing.T, dir, group string, content []byte) (*ImageCache, Artifact) {
	t.Helper()
	root := t.TempDir()
	src := filepath.Join(root, "disk.raw")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := newCache(t, ImageCacheConfig{Dir: dir, Roots: []string{root}, Group: group})
	return c, Artifact{URL: "file://" + src, SHA256: digestOf(content)}
}

func TestImageCacheModes(t *testing.T) {
	content := []byte("disk")
	t.Run("no group", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "images")
		c, a := cacheFromRoot(t, dir, NoImageGroup, content)
		p, err := c.Get(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		if c.perm.gid != -1 {
			t.Errorf("gid = %d, want none", c.perm.gid)
		}
		assertPrivate(t, c, p, filepath.Dir(p), dir)
		if info, _ := os.Stat(p); info.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", info.Mode().Perm())
		}
	})
	t.Run("QEMU's group", func(t *testing.T) {
		g, err := user.LookupGroup(DefaultImageGroup)
		if err != nil || os.Geteuid() != 0 {
			t.Skipf("needs root and a %s group (libvirt's QEMU group on Debian)", DefaultImageGroup)
		}
		gid, _ := strconv.Atoi(g.Gid)
		for _, group := range []string{"", DefaultImageGroup, g.Gid} {
			dir := filepath.Join(t.TempDir(), "images")
			c, a := cacheFromRoot(t, dir, group, content)
			p, err := c.Get(context.Background(), a)
			if err != nil {
				t.Fatal(err)
			}
			if c.perm.gid != gid {
				t.Errorf("Group %q: gid = %d, want %d", group, c.perm.gid, gid)
			}
			assertPrivate(t, c, p, filepath.Dir(p), dir)
			if info, _ := os.Stat(p); info.Mode().Perm() != 0o640 || fileGid(info) != gid {
				t.Errorf("Group %q: mode %v group %d, want 0640 and %d", group, info.Mode().Perm(), fileGid(info), gid)
			}
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		if _, err := NewImageCache(ImageCacheConfig{Dir: t.TempDir(), Group: "no-such-group-drover"}, nil); err == nil {
			t.Error("NewImageCache with an unknown group succeeded, want an error")
		}
	})
	t.Run("older modes are tightened", func(t *testing.T) {
		// The layout an older Drover left: everything readable by all.
		dir := filepath.Join(t.TempDir(), "images")
		sub := filepath.Join(dir, "sha256")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		old := filepath.Join(sub, digestOf(content))
		if err := os.WriteFile(old, content, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, sub, old} {
			if err := os.Chmod(p, map[bool]os.FileMode{true: 0o755, false: 0o644}[p != old]); err != nil {
				t.Fatal(err)
			}
		}
		other := filepath.Join(sub, digestOf([]byte("unused")))
		if err := os.WriteFile(other, []byte("unused"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(other, 0o644); err != nil {
			t.Fatal(err)
		}
		c, a := cacheFromRoot(t, dir, "", content)
		assertPrivate(t, c, dir, sub, other)
		if err := os.Chmod(old, 0o666); err != nil { // loosened again behind its back
			t.Fatal(err)
		}
		p, err := c.Get(context.Background(), a) // a hit
		if err != nil || p != old {
			t.Fatalf("Get = %s, %v; want the cached %s", p, err, old)
		}
		assertPrivate(t, c, old)
	})
}

// A cached file libvirt has handed to QEMU's user for a running VM keeps the owner,
// group and mode libvirt set: libvirt refuses to start the next VM on it otherwise.
func TestImageCacheLeavesFilesInUseByQEMU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	content := []byte("kernel in use")
	dir := filepath.Join(t.TempDir(), "images")
	c, a := cacheFromRoot(t, dir, "", content)
	p, err := c.Get(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	const qemuUID, qemuGID = 64055, 64055 // as libvirt's DAC driver labels it
	if err := os.Chown(p, qemuUID, qemuGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fileUid(info) != qemuUID || fileGid(info) != qemuGID || info.Mode().Perm() != 0o644 {
			t.Errorf("%s: owner %d:%d mode %v, want libvirt's %d:%d 0644 untouched", when, fileUid(info), fileGid(info), info.Mode().Perm(), qemuUID, qemuGID)
		}
	}
	if _, err := c.Get(context.Background(), a); err != nil { // a hit
		t.Fatal(err)
	}
	check("after a hit")
	if _, err := NewImageCache(ImageCacheConfig{Dir: dir}, nil); err != nil { // a restart
		t.Fatal(err)
	}
	check("after a restart")
}

package sources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// getOrHang runs Get and fails the test if it has not returned within a minute: the
// attacks here used to block forever. Not a timing assertion, a hang guard.
func getOrHang(t *testing.T, c *ImageCache, a Artifact) (string, error) {
	t.Helper()
	type result struct {
		p   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := c.Get(context.Background(), a)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.p, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Get(%s) still blocked after a minute", a.URL)
		return "", nil
	}
}

// assertRefusedUnread checks err is a refusal by policy that tells nothing about the
// bytes at the source: no checksum error, no digest of secret in the message.
func assertRefusedUnread(t *testing.T, err error, secret []byte, contains ...string) {
	t.Helper()
	if !errors.Is(err, ErrImageRefused) {
		t.Errorf("error = %v, want a refusal (ErrImageRefused)", err)
	}
	var ce *ChecksumError
	if errors.As(err, &ce) {
		t.Errorf("error = %v: a checksum error reveals the digest of a refused source", err)
	}
	if err != nil && secret != nil && strings.Contains(err.Error(), digestOf(secret)) {
		t.Errorf("error %q reveals the digest of the refused file", err)
	}
	for _, s := range contains {
		if err != nil && !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func TestImageFileNeedsRoot(t *testing.T) {
	content := []byte("kernel")
	src := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	c, dir := newCache(t, ImageCacheConfig{})
	_, err := c.Get(context.Background(), Artifact{URL: "file://" + src, SHA256: digestOf(content)})
	assertRefusedUnread(t, err, content, "--image-root")
	assertOnlyCached(t, dir)
}

func TestImageFileProcEnviron(t *testing.T) {
	environ, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		t.Skipf("no /proc/self/environ: %v", err)
	}
	wrong := digestOf([]byte("a guess"))
	for _, tc := range []struct {
		name  string
		roots []string
	}{
		{"outside the roots", []string{t.TempDir()}},
		// Even an operator who allows /proc gets no kernel views as images.
		{"root is /proc", []string{"/proc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, dir := newCache(t, ImageCacheConfig{Roots: tc.roots})
			for _, u := range []string{"file:///proc/self/environ", "file:///proc/thread-self/../self/environ"} {
				_, err := getOrHang(t, c, Artifact{URL: u, SHA256: wrong})
				assertRefusedUnread(t, err, environ)
				// A commit that names the right digest copies nothing either.
				_, err = getOrHang(t, c, Artifact{URL: u, SHA256: digestOf(environ)})
				assertRefusedUnread(t, err, nil)
			}
			assertOnlyCached(t, dir)
		})
	}
}

func TestImageFileFIFO(t *testing.T) {
	root := t.TempDir()
	fifo := filepath.Join(root, "disk.raw")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Through a symlink too, so the check is on what is opened, not on the name.
	link := filepath.Join(root, "link.raw")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{root}})
	for _, p := range []string{fifo, link} {
		_, err := getOrHang(t, c, Artifact{URL: "file://" + p, SHA256: digestOf(nil)})
		assertRefusedUnread(t, err, nil, "not a regular file", "FIFO")
	}
	assertOnlyCached(t, dir)
}

func TestImageFileDevice(t *testing.T) {
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{"/dev"}})
	for _, u := range []string{"file:///dev/zero", "file:///dev/null"} {
		_, err := getOrHang(t, c, Artifact{URL: u, SHA256: digestOf(nil)})
		assertRefusedUnread(t, err, nil, "not a regular file")
	}
	assertOnlyCached(t, dir)
}

func TestImageFileEscapes(t *testing.T) {
	secret := []byte("host secret")
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(root, "dirlink")); err != nil {
		t.Fatal(err)
	}
	inside := []byte("image inside")
	if err := os.WriteFile(filepath.Join(root, "real.raw"), inside, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.raw", filepath.Join(root, "alias.raw")); err != nil {
		t.Fatal(err)
	}
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{root}})
	for _, u := range []string{
		"file://" + filepath.Join(root, "escape.raw"),
		"file://" + filepath.Join(root, "dirlink", "secret"),
		"file://" + root + "/../" + filepath.Base(filepath.Dir(outside)) + "/secret",
		"file://" + root + "/%2e%2e/" + filepath.Base(filepath.Dir(outside)) + "/secret",
		"file://" + outside,
		"file:///root/../etc/passwd",
	} {
		for _, sum := range []string{digestOf([]byte("guess")), digestOf(secret)} {
			_, err := getOrHang(t, c, Artifact{URL: u, SHA256: sum})
			assertRefusedUnread(t, err, secret)
		}
	}
	assertOnlyCached(t, dir)

	// A symlink that stays inside the root is followed.
	if _, err := c.Get(context.Background(), Artifact{URL: "file://" + filepath.Join(root, "alias.raw"), SHA256: digestOf(inside)}); err != nil {
		t.Errorf("Get through a symlink inside the root: %v", err)
	}
	assertOnlyCached(t, dir, digestOf(inside))
}

func TestImageFileTooBig(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 4096)
	if err := os.WriteFile(filepath.Join(root, "big.raw"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{root}, MaxSize: 1024})
	_, err := c.Get(context.Background(), Artifact{URL: "file://" + filepath.Join(root, "big.raw"), SHA256: digestOf(big)})
	assertRefusedUnread(t, err, nil, "--image-max-size")
	assertOnlyCached(t, dir)
}

func TestImageRootMustBeADirectoryOfImages(t *testing.T) {
	state := t.TempDir()
	for _, roots := range [][]string{{filepath.Join(t.TempDir(), "nope")}, {"/etc/passwd"}, {"/"}, {state}, {filepath.Dir(state)}} {
		if _, err := NewImageCache(ImageCacheConfig{Dir: filepath.Join(state, "images"), Roots: roots}, nil); err == nil {
			t.Errorf("NewImageCache with roots %v succeeded, want an error", roots)
		}
	}
}

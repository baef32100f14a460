package sources

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// imageServer serves content at every path but /missing, counting requests per path.
// When block is set, a request sends a first chunk then waits for block to close or the
// client to go away; started gets one value per request once the chunk is sent.
type imageServer struct {
	*httptest.Server
	content  []byte
	requests sync.Map // path -> *atomic.Int32
	block    chan struct{}
	started  chan string
}

func newImageServer(t *testing.T, content []byte) *imageServer {
	t.Helper()
	s := &imageServer{content: content, started: make(chan string, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := s.requests.LoadOrStore(r.URL.Path, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		if s.block == nil {
			w.Write(s.content)
			return
		}
		w.Write(s.content[:1])
		w.(http.Flusher).Flush()
		s.started <- r.URL.Path
		select {
		case <-s.block:
			w.Write(s.content[1:])
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *imageServer) count(path string) int32 {
	n, ok := s.requests.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

// newCache is a cache in a new directory that may download from 127.0.0.1 (the test
// servers) and from cfg.AllowHosts. Whatever the policy says, it never lets a test
// connect anywhere but the loopback interface.
func newCache(t *testing.T, cfg ImageCacheConfig) (*ImageCache, string) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "images")
	}
	c, err := NewImageCache(cfg, nil)
	if err != nil {
		t.Fatalf("NewImageCache: %v", err)
	}
	c.policy.connecting = loopbackOnly(t)
	return c, cfg.Dir
}

// allowLocal is the config of caches that download from the test servers.
func allowLocal() ImageCacheConfig { return ImageCacheConfig{AllowHosts: []string{"127.0.0.1"}} }

// loopbackOnly refuses, and fails the test for, any connection that would leave the
// loopback interface: a safety net under the policy being tested.
func loopbackOnly(t *testing.T) func(network, address string) error {
	return func(network, address string) error {
		if ap, err := netip.ParseAddrPort(address); err != nil || !ap.Addr().Unmap().IsLoopback() {
			t.Errorf("the cache tried to connect to %s %s", network, address)
			return fmt.Errorf("test refuses %s", address)
		}
		return nil
	}
}

// assertOnlyCached checks that the cache holds exactly these digests and nothing else,
// no unfinished download included.
func assertOnlyCached(t *testing.T, dir string, digests ...string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(digests, ",") {
		t.Errorf("cache holds %v, want %v", got, digests)
	}
}

// assertPrivate checks that no user but Drover and the cache's group can read paths:
// files are 0640 (0600 without a group), directories 0750 (0711), of the group.
func assertPrivate(t *testing.T, c *ImageCache, paths ...string) {
	t.Helper()
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		want := os.FileMode(0o640)
		if c.perm.gid < 0 {
			want = 0o600
		}
		if info.IsDir() {
			want = 0o750
			if c.perm.gid < 0 {
				want = 0o711
			}
		}
		if info.Mode().Perm() != want || info.Mode().Perm()&0o044 == 0o044 && !info.IsDir() || info.Mode().Perm()&0o004 != 0 {
			t.Errorf("mode of %s = %v, want %v", p, info.Mode().Perm(), want)
		}
		if c.perm.gid >= 0 && fileGid(info) != c.perm.gid {
			t.Errorf("group of %s = %d, want %d", p, fileGid(info), c.perm.gid)
		}
	}
}

func TestImageCacheGet(t *testing.T) {
	content := []byte("golden image bytes")
	digest := digestOf(content)
	srv := newImageServer(t, content)
	c, dir := newCache(t, allowLocal())
	ctx := context.Background()

	a := Artifact{URL: srv.URL + "/web.qcow2", SHA256: strings.ToUpper(digest)}
	p, err := c.Get(ctx, a)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if want := filepath.Join(dir, "sha256", digest); p != want {
		t.Errorf("path = %s, want %s", p, want)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, content) {
		t.Errorf("cached content = %q, %v; want %q", got, err, content)
	}
	assertPrivate(t, c, p, filepath.Dir(p), dir)

	// A hit does not download again, whatever URL now points at the digest.
	for _, url := range []string{a.URL, srv.URL + "/mirror.qcow2"} {
		if p2, err := c.Get(ctx, Artifact{URL: url, SHA256: digest}); err != nil || p2 != p {
			t.Errorf("second Get(%s) = %s, %v; want %s", url, p2, err, p)
		}
	}
	if n, m := srv.count("/web.qcow2"), srv.count("/mirror.qcow2"); n != 1 || m != 0 {
		t.Errorf("requests = %d and %d, want 1 and 0", n, m)
	}
	// So does a new cache on the same dir, as after a restart.
	c2, err := NewImageCache(ImageCacheConfig{Dir: dir, AllowHosts: []string{"127.0.0.1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Get(ctx, a); err != nil || srv.count("/web.qcow2") != 1 {
		t.Errorf("Get after restart = %v with %d requests; want a hit", err, srv.count("/web.qcow2"))
	}
	assertOnlyCached(t, dir, digest)
}

func TestImageCacheFileURL(t *testing.T) {
	content := []byte("kernel bytes")
	src := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{filepath.Dir(src)}})
	p, err := c.Get(context.Background(), Artifact{URL: "file://" + src, SHA256: digestOf(content)})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, content) {
		t.Errorf("cached content = %q, %v; want %q", got, err, content)
	}
	assertPrivate(t, c, p)
	assertOnlyCached(t, dir, digestOf(content))
}

func TestImageCacheConcurrentGetsDownloadOnce(t *testing.T) {
	content := []byte("shared image")
	srv := newImageServer(t, content)
	srv.block = make(chan struct{})
	c, dir := newCache(t, allowLocal())
	const callers = 8
	joined := make(chan struct{}, callers)
	c.joined = func(string) { joined <- struct{}{} }

	a := Artifact{URL: srv.URL + "/shared.qcow2", SHA256: digestOf(content)}
	errs := make(chan error, callers)
	for range callers {
		go func() {
			_, err := c.Get(context.Background(), a)
			errs <- err
		}()
	}
	<-srv.started
	for range callers - 1 {
		<-joined
	}
	close(srv.block)
	for range callers {
		if err := <-errs; err != nil {
			t.Errorf("Get: %v", err)
		}
	}
	if n := srv.count("/shared.qcow2"); n != 1 {
		t.Errorf("requests = %d, want 1", n)
	}
	assertOnlyCached(t, dir, a.SHA256)
}

func TestImageCacheErrors(t *testing.T) {
	content := []byte("real bytes")
	srv := newImageServer(t, content)
	wrong := digestOf([]byte("other bytes"))
	root := t.TempDir()
	missingFile := filepath.Join(root, "nope")
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		artifact Artifact
		contains []string
		is       error
	}{
		{"checksum mismatch", Artifact{URL: srv.URL + "/bad.qcow2", SHA256: wrong},
			[]string{"checksum mismatch", srv.URL + "/bad.qcow2", wrong, digestOf(content)}, nil},
		{"HTTP 404", Artifact{URL: srv.URL + "/missing", SHA256: wrong},
			[]string{srv.URL + "/missing", "404"}, ErrImageUnavailable},
		{"missing file", Artifact{URL: "file://" + missingFile, SHA256: wrong},
			[]string{missingFile, "no such file"}, ErrImageUnavailable},
		{"directory", Artifact{URL: "file://" + filepath.Join(root, "dir"), SHA256: wrong},
			[]string{"not a regular file", "a directory"}, ErrImageRefused},
		{"unsupported scheme", Artifact{URL: "ftp://127.0.0.1/x", SHA256: wrong},
			[]string{"ftp://127.0.0.1/x", "want a file://, http:// or https:// URL"}, ErrImageRefused},
		{"relative file URL", Artifact{URL: "file://images/x", SHA256: wrong},
			[]string{"must be absolute"}, ErrImageRefused},
		{"bad digest", Artifact{URL: srv.URL + "/x", SHA256: "abc"},
			[]string{`invalid sha256 "abc"`}, ErrImageRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := allowLocal()
			cfg.Roots = []string{root}
			c, dir := newCache(t, cfg)
			p, err := c.Get(context.Background(), tt.artifact)
			if err == nil {
				t.Fatalf("Get = %s, want an error", p)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			var ce *ChecksumError
			if tt.is != nil && errors.As(err, &ce) {
				t.Errorf("error %q is a ChecksumError: it would fail the revision", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			assertOnlyCached(t, dir)
		})
	}
	if n := srv.count("/x"); n != 0 {
		t.Errorf("a request was sent for an artifact with an invalid digest")
	}

	t.Run("checksum error type", func(t *testing.T) {
		c, _ := newCache(t, allowLocal())
		_, err := c.Get(context.Background(), Artifact{URL: srv.URL + "/typed", SHA256: wrong})
		var ce *ChecksumError
		if !errors.As(err, &ce) || ce.URL != srv.URL+"/typed" || ce.Want != wrong || ce.Got != digestOf(content) {
			t.Errorf("error = %#v, want a ChecksumError with URL, want and got", err)
		}
		// A mismatch is not remembered: fixed content behind the URL is fetched again.
		if _, err := c.Get(context.Background(), Artifact{URL: srv.URL + "/typed", SHA256: digestOf(content)}); err != nil {
			t.Errorf("Get with the right digest: %v", err)
		}
	})
}

func TestImageCacheCancel(t *testing.T) {
	content := []byte("slow image")
	digest := digestOf(content)

	t.Run("cancelled before", func(t *testing.T) {
		srv := newImageServer(t, content)
		c, dir := newCache(t, allowLocal())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Get(ctx, Artifact{URL: srv.URL + "/a", SHA256: digest})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Get = %v, want context.Canceled", err)
		}
		assertOnlyCached(t, dir)
	})

	t.Run("cancelled mid-download", func(t *testing.T) {
		srv := newImageServer(t, content)
		srv.block = make(chan struct{})
		defer close(srv.block)
		c, dir := newCache(t, allowLocal())
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, Artifact{URL: srv.URL + "/a", SHA256: digest})
			errc <- err
		}()
		<-srv.started
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Get = %v, want context.Canceled", err)
		}
		assertOnlyCached(t, dir)
	})

	t.Run("a waiter outlives a cancelled download", func(t *testing.T) {
		srv := newImageServer(t, content)
		srv.block = make(chan struct{})
		c, dir := newCache(t, allowLocal())
		joined := make(chan struct{}, 1)
		c.joined = func(string) { joined <- struct{}{} }
		a := Artifact{URL: srv.URL + "/a", SHA256: digest}

		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, a)
			first <- err
		}()
		<-srv.started
		second := make(chan error, 1)
		go func() {
			_, err := c.Get(context.Background(), a)
			second <- err
		}()
		<-joined
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) {
			t.Errorf("first Get = %v, want context.Canceled", err)
		}
		// The download goes on for the waiter: nothing starts over.
		close(srv.block)
		if err := <-second; err != nil {
			t.Errorf("second Get = %v, want success", err)
		}
		if n := srv.count("/a"); n != 1 {
			t.Errorf("requests = %d, want 1", n)
		}
		assertOnlyCached(t, dir, digest)
	})

	t.Run("a caller's deadline does not waste the download", func(t *testing.T) {
		// A pass that gives up on a slow image must not throw away what was fetched:
		// the download goes on and the next pass finds the image.
		srv := newImageServer(t, content)
		srv.block = make(chan struct{})
		c, dir := newCache(t, allowLocal())
		a := Artifact{URL: srv.URL + "/a", SHA256: digest}
		ctx := &expiring{Context: context.Background(), done: make(chan struct{})}
		errc := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, a)
			errc <- err
		}()
		<-srv.started
		close(ctx.done)
		if err := <-errc; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Get = %v, want its caller's context.DeadlineExceeded", err)
		}
		close(srv.block)
		if _, err := c.Get(context.Background(), a); err != nil {
			t.Errorf("next Get = %v, want success", err)
		}
		if n := srv.count("/a"); n != 1 {
			t.Errorf("requests = %d, want 1: the download started over", n)
		}
		assertOnlyCached(t, dir, digest)
	})
}

// expiring is a context whose deadline passes when done is closed.
type expiring struct {
	context.Context
	done chan struct{}
}

func (e *expiring) Done() <-chan struct{} { return e.done }

func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestNewImageCacheRemovesUnfinished(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sha256")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, tempPrefix+"abc-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewImageCache(ImageCacheConfig{Dir: dir}, nil); err != nil {
		t.Fatalf("NewImageCache: %v", err)
	}
	assertOnlyCached(t, dir)
	if _, err := NewImageCache(ImageCacheConfig{}, nil); err == nil {
		t.Errorf("NewImageCache(\"\") succeeded, want an error")
	}
}

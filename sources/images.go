package sources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ChecksumError means an image's bytes do not have the digest the fleet file gives.
// Nothing is cached: such an image is never booted.
type ChecksumError struct {
	URL  string
	Want string
	Got  string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: want sha256 %s, got %s", e.URL, e.Want, e.Got)
}

// tempPrefix marks downloads in progress; they are never taken for cached images.
const tempPrefix = ".tmp-"

// ImageCache keeps golden images by content: <dir>/sha256/<hex>. A file at such a path
// has been verified, since it is written under another name and renamed only once its
// digest matched; so a hit needs no hashing. One Drover process owns a cache dir.
type ImageCache struct {
	dir    string // <dir>/sha256
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	inflight map[string]*download // by digest

	// joined, when set, is called when a Get waits for another's download; tests use it
	// to know that calls overlap.
	joined func(digest string)
}

type download struct {
	url  string
	done chan struct{}
	err  error // set before done is closed
}

// NewImageCache creates the cache in dir. Downloads left half-done by a previous
// process are removed. client is used for http and https URLs (http.DefaultClient when
// nil); cancellation comes from each Get's context.
func NewImageCache(dir string, client *http.Client, log *slog.Logger) (*ImageCache, error) {
	if dir == "" {
		return nil, errors.New("image cache: dir is required")
	}
	if client == nil {
		client = http.DefaultClient
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image cache %s: %w", dir, err)
	}
	c := &ImageCache{
		dir:      filepath.Join(abs, "sha256"),
		client:   client,
		log:      log,
		inflight: map[string]*download{},
	}
	// libvirt's qemu user, not Drover's, opens the images: the tree must be readable by
	// all, whatever the umask.
	for _, d := range []string{abs, c.dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("image cache %s: %w", dir, err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, fmt.Errorf("image cache %s: %w", dir, err)
		}
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("image cache %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(c.dir, e.Name())); err != nil {
				return nil, fmt.Errorf("image cache %s: remove unfinished download: %w", dir, err)
			}
			log.Info("removed unfinished image download", "file", e.Name())
		}
	}
	return c, nil
}

// Path is where the image with this digest is, once Get has returned it.
func (c *ImageCache) Path(sha256Hex string) string {
	return filepath.Join(c.dir, strings.ToLower(sha256Hex))
}

// Get returns the path of the verified image a, downloading it if it is not cached.
// Concurrent calls for one digest download it once.
func (c *ImageCache) Get(ctx context.Context, a Artifact) (string, error) {
	digest := strings.ToLower(a.SHA256)
	if !sha256RE.MatchString(digest) {
		return "", fmt.Errorf("get image %s: invalid sha256 %q: want 64 hex digits", a.URL, a.SHA256)
	}
	if msg := checkImageURL(a.URL); msg != "" {
		return "", fmt.Errorf("get image: %s", msg)
	}
	final := c.Path(digest)
	for {
		c.mu.Lock()
		// Checked under the lock: a finished download renames before leaving inflight.
		if cached(final) {
			c.mu.Unlock()
			return final, nil
		}
		d, ok := c.inflight[digest]
		if !ok {
			d = &download{url: a.URL, done: make(chan struct{})}
			c.inflight[digest] = d
			c.mu.Unlock()
			err := c.download(ctx, a.URL, digest, final)
			c.mu.Lock()
			delete(c.inflight, digest)
			d.err = err
			close(d.done)
			c.mu.Unlock()
			if err != nil {
				return "", err
			}
			return final, nil
		}
		c.mu.Unlock()
		if c.joined != nil {
			c.joined(digest)
		}
		select {
		case <-d.done:
		case <-ctx.Done():
			return "", fmt.Errorf("get image %s: %w", a.URL, ctx.Err())
		}
		if d.err == nil {
			return final, nil
		}
		// The other call's failure is ours only if it had our URL and was not merely
		// cancelled by its own caller.
		if d.url == a.URL && !errors.Is(d.err, context.Canceled) && !errors.Is(d.err, context.DeadlineExceeded) {
			return "", d.err
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("get image %s: %w", a.URL, ctx.Err())
		}
	}
}

func cached(p string) bool {
	info, err := os.Lstat(p)
	return err == nil && info.Mode().IsRegular()
}

// download fetches rawURL into a temporary file beside final while hashing it, and
// renames it to final only when the digest matches.
func (c *ImageCache) download(ctx context.Context, rawURL, digest, final string) (err error) {
	start := time.Now()
	src, err := c.open(ctx, rawURL)
	if err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	defer src.Close()

	tmp, err := os.CreateTemp(c.dir, tempPrefix+digest[:12]+"-*")
	if err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), &ctxReader{ctx: ctx, r: src})
	if err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return &ChecksumError{URL: rawURL, Want: digest, Got: got}
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	// Durable before it is visible: after a crash, a file at final is a whole image.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("get image %s: %w", rawURL, err)
	}
	if dir, err := os.Open(c.dir); err == nil {
		_ = dir.Sync() // best effort: the rename is already done
		dir.Close()
	}
	c.log.Info("cached image", "url", rawURL, "sha256", digest, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (c *ImageCache) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, err
		}
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			f.Close()
			if err == nil {
				err = fmt.Errorf("%s is not a regular file", u.Path)
			}
			return nil, err
		}
		return f, nil
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			resp.Body.Close()
			return nil, fmt.Errorf("HTTP status %s", resp.Status)
		}
		return resp.Body, nil
	}
	return nil, fmt.Errorf("unsupported URL scheme %q", u.Scheme)
}

// ctxReader stops a copy when ctx ends; a file read has no context of its own.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

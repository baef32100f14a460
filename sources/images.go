package sources

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/drover-dev/drover/internal/redact"
)

// Defaults of ImageCacheConfig.
const (
	// DefaultImageMaxSize bounds one image (20 GiB): a commit cannot fill the disk
	// that holds the cache, nor make one download run without end.
	DefaultImageMaxSize int64 = 20 << 30
	// DefaultImageDownloadTimeout bounds one download (30 min): a server that trickles
	// or stalls cannot hold a rollout; the next pass retries.
	DefaultImageDownloadTimeout = 30 * time.Minute
	// DefaultImageGCGrace is how long an image no VM and no current revision uses
	// stays cached (24 h): a rollback to the previous revision needs no download.
	DefaultImageGCGrace = 24 * time.Hour
	// defaultProgressEvery is how often a long download logs its progress.
	defaultProgressEvery = 10 * time.Second
)

// ImageCacheConfig configures an ImageCache. Image URLs come from commits; every limit
// here is the operator's, and its default is the safe one.
type ImageCacheConfig struct {
	// Dir holds the cache, as <Dir>/sha256/<hex>. Required.
	Dir string
	// Roots are the directories file:// images may be read from (--image-root), with
	// everything below them; symlinks are followed only where they stay inside. Default
	// none: file:// URLs are refused, since otherwise a commit could read any host file
	// (/proc/self/environ holds Consul's token) into a guest.
	Roots []string
	// AllowHosts are host names, IP addresses and CIDRs (--image-allow-host) that
	// http(s) images may come from although they are refused by default: loopback,
	// link-local (the cloud metadata service), unspecified, multicast and this host's
	// own addresses. A name is allowed whatever it resolves to; an address or CIDR
	// allows connections to those addresses. Default none: a commit cannot make Drover
	// send requests to the host's own services (Consul, Drover's status) or fetch
	// cloud credentials. Private ranges (10/8, 192.168/16, …) are allowed.
	AllowHosts []string
	// MaxSize is the largest image in bytes (--image-max-size); default
	// DefaultImageMaxSize. Larger ones are refused by Content-Length before the body is
	// read, or as soon as the body passes it.
	MaxSize int64
	// DownloadTimeout bounds each download (--image-download-timeout), separately from
	// the caller's context; default DefaultImageDownloadTimeout. A download that hits it
	// fails with ErrImageUnavailable, never a checksum verdict.
	DownloadTimeout time.Duration
	// Metrics, optional, is told the bytes and the outcome of each download.
	Metrics ImageMetrics
	// Group is the group that may read the cache: the group of the hypervisor's QEMU
	// user (kvm for libvirt on Debian). Default: DefaultImageGroup when that group
	// exists and Drover may give files to it, else NoImageGroup. Files are 0640 and
	// directories 0750 with a group, 0600 and 0711 without; other users read nothing.
	Group string
}

// ImageCache keeps golden images by content: <dir>/sha256/<hex>. A file at such a path
// has been verified, since it is written under another name and renamed only once its
// digest matched; so a hit needs no hashing. One Drover process owns a cache dir.
type ImageCache struct {
	dir           string // <dir>/sha256
	roots         []imageRoot
	policy        *hostPolicy
	client        *http.Client
	maxSize       int64
	timeout       time.Duration
	perm          cachePerm
	progressEvery time.Duration
	log           *slog.Logger
	now           func() time.Time
	metrics       ImageMetrics

	mu       sync.Mutex
	inflight map[string]*download // by digest

	// joined, when set, is called when a Get waits for another's download; tests use it
	// to know that calls overlap.
	joined func(digest string)
}

type download struct {
	url     string
	done    chan struct{}
	err     error                   // set before done is closed
	waiters int                     // Gets waiting for it, under ImageCache.mu
	cancel  context.CancelCauseFunc // abandons it
}

// tempPrefix marks downloads in progress; they are never taken for cached images.
const tempPrefix = ".tmp-"

// errDownloadTimeout is the cause of a download's own deadline.
var errDownloadTimeout = errors.New("image download timeout")

// NewImageCache creates the cache in cfg.Dir. Downloads left half-done by a previous
// process are removed. Cancellation comes from each Get's context.
func NewImageCache(cfg ImageCacheConfig, log *slog.Logger) (*ImageCache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("image cache: dir is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxSize < 0 || cfg.DownloadTimeout < 0 {
		return nil, fmt.Errorf("image cache: max size %d and download timeout %s must not be negative", cfg.MaxSize, cfg.DownloadTimeout)
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("image cache %s: %w", cfg.Dir, err)
	}
	roots, err := newImageRoots(cfg.Roots)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if err := rootsAvoid(roots, abs); err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	policy, err := newHostPolicy(cfg.AllowHosts)
	if err != nil {
		return nil, fmt.Errorf("image cache: %w", err)
	}
	c := &ImageCache{
		dir:           filepath.Join(abs, "sha256"),
		roots:         roots,
		policy:        policy,
		client:        newImageClient(policy),
		maxSize:       cfg.MaxSize,
		timeout:       cfg.DownloadTimeout,
		progressEvery: defaultProgressEvery,
		log:           log,
		now:           time.Now,
		metrics:       cfg.Metrics,
		inflight:      map[string]*download{},
	}
	if c.maxSize == 0 {
		c.maxSize = DefaultImageMaxSize
	}
	if c.timeout == 0 {
		c.timeout = DefaultImageDownloadTimeout
	}
	// The parent (the state dir) is QEMU's way in too: created traversable, as before.
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("image cache %s: %w", cfg.Dir, err)
	}
	// The cache's own directories are created private: the mode is widened to the
	// group's only once the group is set.
	for _, d := range []string{abs, c.dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("image cache %s: %w", cfg.Dir, err)
		}
	}
	perm, group, err := resolveGroup(cfg.Group, abs)
	if err != nil {
		return nil, err
	}
	c.perm = perm
	for _, d := range []string{abs, c.dir} {
		info, err := os.Lstat(d)
		if err == nil {
			err = perm.apply(d, info)
		}
		if err != nil {
			return nil, fmt.Errorf("image cache %s: %w", cfg.Dir, err)
		}
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("image cache %s: %w", cfg.Dir, err)
	}
	for _, e := range entries {
		p := filepath.Join(c.dir, e.Name())
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("image cache %s: remove unfinished download: %w", cfg.Dir, err)
			}
			log.Info("removed unfinished image download", "file", e.Name())
			continue
		}
		// Images an older Drover cached readable by all are tightened now, not only
		// when next used. A file libvirt has handed to QEMU's user for a running VM
		// may refuse a Drover that is not root; it is tightened on its next use.
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			if err := perm.apply(p, info); err != nil {
				log.Warn("cannot set the mode of a cached image", "file", e.Name(), "err", err)
			}
		}
	}
	log.Debug("image cache ready", "dir", abs, "group", group, "roots", c.rootList(), "max_size", c.maxSize, "download_timeout", c.timeout)
	return c, nil
}

// Path is where the image with this digest is, once Get has returned it.
func (c *ImageCache) Path(sha256Hex string) string {
	return filepath.Join(c.dir, strings.ToLower(sha256Hex))
}

// Get returns the path of the verified image a, downloading it if it is not cached.
// Concurrent calls for one digest share one download. A URL the policy refuses is
// refused even when its digest is cached, so a commit's outcome does not depend on
// what the cache happens to hold. See ErrImageUnavailable for what its errors mean.
//
// The download is bounded by DownloadTimeout, not by ctx's deadline: a caller whose
// deadline passes gets its ctx error at once, while the download goes on so that the
// next Get finds the image (or joins the download) instead of starting over. It stops
// early only when every caller waiting for it was cancelled.
func (c *ImageCache) Get(ctx context.Context, a Artifact) (string, error) {
	digest := strings.ToLower(a.SHA256)
	if !sha256RE.MatchString(digest) {
		return "", refused(a.URL, "invalid sha256 %q: want 64 hex digits", a.SHA256)
	}
	if err := c.checkURL(a.URL); err != nil {
		return "", err
	}
	final := c.Path(digest)
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("get image %s: %w", redact.URL(a.URL), err)
		}
		c.mu.Lock()
		// Checked under the lock: a finished download renames before leaving inflight,
		// and Collect removes under it.
		if cached(final) {
			if err := c.perm.touch(final, c.now()); err != nil {
				// EPERM: a Drover that is not root, on a file libvirt handed to QEMU for
				// a running VM, which is in use anyway.
				level := slog.LevelWarn
				if errors.Is(err, fs.ErrPermission) {
					level = slog.LevelDebug
				}
				c.log.Log(ctx, level, "cannot record use of cached image", "sha256", digest, "err", err)
			}
			c.mu.Unlock()
			return final, nil
		}
		d, ok := c.inflight[digest]
		if !ok {
			d = c.start(ctx, a.URL, digest, final)
		}
		d.waiters++
		c.mu.Unlock()
		if ok && c.joined != nil {
			c.joined(digest)
		}

		select {
		case <-d.done:
		case <-ctx.Done():
			c.mu.Lock()
			d.waiters--
			last := d.waiters == 0 && errors.Is(ctx.Err(), context.Canceled)
			if last {
				d.cancel(context.Canceled)
			}
			c.mu.Unlock()
			if last {
				// Wait for the abandoned download to clean up after itself: it stops at
				// its next read.
				<-d.done
			}
			return "", fmt.Errorf("get image %s: %w", redact.URL(a.URL), ctx.Err())
		}
		c.mu.Lock()
		d.waiters--
		c.mu.Unlock()
		if d.err == nil {
			return final, nil
		}
		// Another caller's failure is ours only if it had our URL and was not abandoned
		// by its callers.
		if d.url == a.URL && !errors.Is(d.err, context.Canceled) {
			return "", d.err
		}
	}
}

// start begins downloading digest in the background; c.mu is held. The download keeps
// ctx's values but not its cancellation or deadline: the waiters decide when it is
// abandoned.
func (c *ImageCache) start(ctx context.Context, rawURL, digest, final string) *download {
	dctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	d := &download{url: rawURL, done: make(chan struct{}), cancel: cancel}
	c.inflight[digest] = d
	go func() {
		defer cancel(nil)
		err := c.download(dctx, rawURL, digest, final)
		c.mu.Lock()
		delete(c.inflight, digest)
		d.err = err
		close(d.done)
		c.mu.Unlock()
	}()
	return d
}

func cached(p string) bool {
	info, err := os.Lstat(p)
	return err == nil && info.Mode().IsRegular()
}

// checkURL refuses, before any I/O, what the policy refuses by the URL alone.
func (c *ImageCache) checkURL(rawURL string) error {
	if msg := checkImageURL(rawURL); msg != "" {
		return refused(rawURL, "%s", msg)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return refused(rawURL, "invalid URL")
	}
	if u.Scheme == "file" {
		return c.checkFilePath(rawURL, u.Path)
	}
	if c.policy.names[normHost(u.Hostname())] {
		return nil
	}
	if why := c.policy.checkHost(u.Hostname()); why != "" {
		return refused(rawURL, "%s", why)
	}
	return nil
}

// download fetches rawURL into a temporary file beside final while hashing it, and
// renames it to final only when the digest matches. Whatever fails, nothing but a
// whole verified image is ever visible at final.
func (c *ImageCache) download(ctx context.Context, rawURL, digest, final string) (err error) {
	start := time.Now()
	dctx, cancel := context.WithTimeoutCause(ctx, c.timeout, errDownloadTimeout)
	defer cancel()
	var pr *progressReader // counts what was read, for metrics
	defer func() {
		if err != nil {
			err = c.fetchError(ctx, dctx, rawURL, err)
		}
		var n int64
		if pr != nil {
			n = pr.n
		}
		c.observeDownload(n, err)
	}()
	src, total, err := c.open(dctx, rawURL)
	if err != nil {
		return err
	}
	defer src.Close()

	tmp, err := os.CreateTemp(c.dir, tempPrefix+digest[:12]+"-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	pr = &progressReader{r: io.LimitReader(&ctxReader{ctx: dctx, r: src}, c.maxSize+1), total: total, start: start, last: start,
		every: c.progressEvery, log: c.log.With("url", redact.URL(rawURL), "sha256", digest)}
	n, err := io.Copy(io.MultiWriter(tmp, h), pr)
	if err != nil {
		return err
	}
	if n > c.maxSize {
		return refused(rawURL, "more than the image size limit %d bytes (--image-max-size)", c.maxSize)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return &ChecksumError{URL: redact.URL(rawURL), Want: digest, Got: got}
	}
	if c.perm.gid >= 0 {
		if err := tmp.Chown(-1, c.perm.gid); err != nil {
			return fmt.Errorf("set group of cached image: %w", err)
		}
	}
	if err := tmp.Chmod(c.perm.file); err != nil {
		return fmt.Errorf("set mode of cached image: %w", err)
	}
	// Durable before it is visible: after a crash, a file at final is a whole image.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync cached image: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close cached image: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("rename cached image: %w", err)
	}
	if dir, err := os.Open(c.dir); err == nil {
		_ = dir.Sync() // best effort: the rename is already done
		dir.Close()
	}
	c.log.Info("cached image", "url", redact.URL(rawURL), "sha256", digest, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// fetchError classifies a failed download (see ErrImageUnavailable). The download's
// own deadline is reported without context.DeadlineExceeded in the chain: that is the
// caller's deadline, and a slow image is not a verdict on a revision.
func (c *ImageCache) fetchError(ctx, dctx context.Context, rawURL string, err error) error {
	var (
		pe *PolicyError
		ce *ChecksumError
		ae *addrError
		re *redirectError
	)
	red := redact.URL(rawURL)
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &ae):
		return refused(rawURL, "%s", ae.msg)
	case errors.As(err, &re):
		return refused(rawURL, "%s", re.msg)
	case ctx.Err() != nil:
		return fmt.Errorf("get image %s: %w", red, ctx.Err())
	case errors.Is(context.Cause(dctx), errDownloadTimeout):
		return fmt.Errorf("get image %s: %w: download did not finish within %s (--image-download-timeout)", red, ErrImageUnavailable, c.timeout)
	}
	return fmt.Errorf("get image %s: %w: %s", red, ErrImageUnavailable, redact.String(err.Error()))
}

// open returns the image's bytes and their length, -1 when unknown.
func (c *ImageCache) open(ctx context.Context, rawURL string) (io.ReadCloser, int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, refused(rawURL, "invalid URL")
	}
	switch u.Scheme {
	case "file":
		return c.openFile(rawURL, u.Path)
	case "http", "https":
		return c.openHTTP(ctx, rawURL)
	}
	return nil, 0, refused(rawURL, "unsupported URL scheme %q", u.Scheme)
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

// progressReader logs how far a long download is, every `every`.
type progressReader struct {
	r           io.Reader
	n, total    int64
	start, last time.Time
	every       time.Duration
	log         *slog.Logger
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		secs := now.Sub(p.start).Seconds()
		attrs := []any{"bytes", p.n, "mib_per_s", fmt.Sprintf("%.1f", float64(p.n)/(1<<20)/max(secs, 0.001))}
		if p.total > 0 {
			attrs = append(attrs, "total", p.total, "percent", p.n*100/p.total)
		}
		p.log.Info("downloading image", attrs...)
	}
	return n, err
}

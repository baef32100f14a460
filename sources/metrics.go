package sources

import (
	"context"
	"errors"
)

// What the sources report for metrics. Both are optional (nil reports nothing); cmd
// hands the server's *Metrics to both. Their methods must not block: they are called
// on a fetch's way.

// GitMetrics is told of each exchange with the git remote.
type GitMetrics interface {
	// ObserveGitFetch: one session with the remote (its refs listed, then at most one
	// pack) received bytes of pack, 0 for a poll that found nothing new, and failed
	// with err. Bytes received before a failure count. An exchange cut by the caller's
	// cancellation (Drover stopping, a lost leadership) is no failure of the remote:
	// its err is nil. A pinned commit already in the clone asks the remote nothing and
	// is not reported.
	ObserveGitFetch(bytes int64, err error)
}

// ImageMetrics is told of each image the cache fills in.
type ImageMetrics interface {
	// ObserveImageDownload: one download into the cache, http(s) or a file:// copy
	// alike (both are read, hashed and verified the same way), read bytes from its
	// source and failed with err (a checksum mismatch, the size limit, the download
	// timeout, a refused redirect…). A download every caller abandoned is no failure:
	// its err is nil. A cache hit, and a URL refused before any I/O, are not reported.
	ObserveImageDownload(bytes int64, err error)
}

// observeFetch reports one exchange with the remote to GitConfig.Metrics. It may come
// after the operation returned (see locked): an exchange is reported when it ends.
func (g *Git) observeFetch(ctx context.Context, bytes int64, err error) {
	if g.cfg.Metrics == nil {
		return
	}
	if err != nil && ctx.Err() != nil {
		// What go-git made of the end of ctx says less than why it ended.
		err = ctxError(ctx)
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	g.cfg.Metrics.ObserveGitFetch(bytes, err)
}

// observeDownload reports one download to ImageCacheConfig.Metrics.
func (c *ImageCache) observeDownload(bytes int64, err error) {
	if c.metrics == nil {
		return
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	c.metrics.ObserveImageDownload(bytes, err)
}

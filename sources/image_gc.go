package sources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Collect removes cached images that are not in use and were last used (returned by
// Get, or cached) more than grace ago, and returns their digests. inUse is asked for
// every cached digest; the caller answers with the images of its current revision and
// of every VM that exists, whatever its revision. It is called with the cache locked
// and must not call back into the cache. grace should outlast the time between a Get
// and the VM that uses its path being created; DefaultImageGCGrace when zero.
func (c *ImageCache) Collect(ctx context.Context, inUse func(digest string) bool, grace time.Duration) (removed []string, err error) {
	if grace <= 0 {
		grace = DefaultImageGCGrace
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("collect images in %s: %w", c.dir, err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, errors.Join(append(errs, fmt.Errorf("collect images: %w", err))...)
		}
		digest := e.Name()
		if !sha256RE.MatchString(digest) || digest != filepath.Base(c.Path(digest)) {
			continue // a download in progress, or not the cache's
		}
		gone, err := c.collectOne(digest, inUse, grace)
		if err != nil {
			errs = append(errs, err)
		}
		if gone {
			removed = append(removed, digest)
		}
	}
	if len(removed) > 0 {
		c.log.Info("removed unused images", "count", len(removed), "grace", grace)
	}
	return removed, errors.Join(errs...)
}

func (c *ImageCache) collectOne(digest string, inUse func(string) bool, grace time.Duration) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, busy := c.inflight[digest]; busy || inUse(digest) {
		return false, nil
	}
	p := c.Path(digest)
	info, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("collect image %s: %w", digest, err)
	}
	if !info.Mode().IsRegular() || c.now().Sub(info.ModTime()) < grace {
		return false, nil
	}
	if err := os.Remove(p); err != nil {
		return false, fmt.Errorf("collect image %s: %w", digest, err)
	}
	c.log.Debug("removed unused image", "sha256", digest, "last_used", info.ModTime())
	return true, nil
}

package sources

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestImageCacheCollect(t *testing.T) {
	root := t.TempDir()
	var arts []Artifact
	for i := range 4 {
		content := fmt.Appendf(nil, "image %d", i)
		src := filepath.Join(root, fmt.Sprintf("img%d.raw", i))
		if err := os.WriteFile(src, content, 0o644); err != nil {
			t.Fatal(err)
		}
		arts = append(arts, Artifact{URL: "file://" + src, SHA256: digestOf(content)})
	}
	c, dir := newCache(t, ImageCacheConfig{Roots: []string{root}})
	now := time.Now()
	c.now = func() time.Time { return now }
	ctx := context.Background()
	for _, a := range arts {
		if _, err := c.Get(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// An unfinished download and a file that is not an image are not the collector's.
	for _, name := range []string{tempPrefix + "abc-1", "README"} {
		if err := os.WriteFile(filepath.Join(dir, "sha256", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const grace = time.Hour
	// Images 0 and 1 were last used two hours ago, 2 just now; 0 and 3 are in use.
	for _, i := range []int{0, 1, 3} {
		old := now.Add(-2 * grace)
		if err := os.Chtimes(c.Path(arts[i].SHA256), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, arts[3]); err != nil { // a hit records a use
		t.Fatal(err)
	}
	used := map[string]bool{arts[0].SHA256: true}
	removed, err := c.Collect(ctx, func(d string) bool { return used[d] }, grace)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if want := []string{arts[1].SHA256}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v (unused and older than the grace)", removed, want)
	}
	kept := []string{arts[0].SHA256, arts[2].SHA256, arts[3].SHA256}
	for _, d := range kept {
		if !cached(c.Path(d)) {
			t.Errorf("image %s was removed", d)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sha256", tempPrefix+"abc-1")); err != nil {
		t.Errorf("unfinished download removed: %v", err)
	}
	// A collected image is fetched again when a revision needs it.
	if _, err := c.Get(ctx, arts[1]); err != nil || !cached(c.Path(arts[1].SHA256)) {
		t.Errorf("Get after Collect: %v", err)
	}
	// Once everything is old and unused, everything goes.
	now = now.Add(3 * grace)
	removed, err = c.Collect(ctx, func(string) bool { return false }, grace)
	if err != nil || len(removed) != len(arts) {
		t.Errorf("Collect = %v, %v; want all %d images", removed, err, len(arts))
	}
}

package sources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// observed is one observation a recordingMetrics was told.
type observed struct {
	bytes int64
	err   error
}

func (o observed) String() string { return fmt.Sprintf("(%d bytes, err %v)", o.bytes, o.err) }

// recordingMetrics records what the sources report, for the tests to compare.
type recordingMetrics struct {
	mu     sync.Mutex
	git    []observed
	images []observed
}

var (
	_ GitMetrics   = (*recordingMetrics)(nil)
	_ ImageMetrics = (*recordingMetrics)(nil)
)

func (m *recordingMetrics) ObserveGitFetch(bytes int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.git = append(m.git, observed{bytes, err})
}

func (m *recordingMetrics) ObserveImageDownload(bytes int64, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.images = append(m.images, observed{bytes, err})
}

// waitGit waits for n git observations and returns them with takeGit: an exchange
// left to finish in the background (see locked) is reported when it ends.
func (m *recordingMetrics) waitGit(t *testing.T, n int) []observed {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m.mu.Lock()
		got := len(m.git)
		m.mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			return m.takeGit()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// takeGit returns the git observations since the last call.
func (m *recordingMetrics) takeGit() []observed {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.git
	m.git = nil
	return out
}

func (m *recordingMetrics) takeImages() []observed {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.images
	m.images = nil
	return out
}

// checkObserved compares observations with what is wanted: the bytes exactly, or at
// least minBytes when bytes is -1; the error by errors.Is (nil: none).
func checkObserved(t *testing.T, what string, got []observed, want []observed, minBytes int64) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		switch {
		case w.bytes == -1 && g.bytes < minBytes, w.bytes != -1 && g.bytes != w.bytes:
			ok = false
		case w.err == nil && g.err != nil, w.err != nil && !errors.Is(g.err, w.err):
			ok = false
		}
	}
	if !ok {
		t.Errorf("%s: observed %+v, want %+v (-1: at least %d bytes)", what, got, want, minBytes)
	}
}

// TestGitReportsFetches: each exchange with a real git server is reported once, with
// the bytes of the pack the server sent (0 for a poll with nothing new) and its error.
func TestGitReportsFetches(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	repo.CommitSigned(t, nil, fleetWith("web"), "first")
	srv := testenv.ServeGitHTTP(t, filepath.Dir(repo.Dir), testenv.GitHTTPOptions{})
	m := &recordingMetrics{}
	g := newGit(t, GitConfig{URL: srv.RepoURL(filepath.Base(repo.Dir)), Dir: filepath.Join(t.TempDir(), "clone"), Metrics: m})
	lastPack := func() int64 {
		tr := srv.Transfers()
		if len(tr) == 0 {
			t.Fatal("the server sent no pack")
		}
		return tr[len(tr)-1].Bytes
	}

	readAt(t, g)
	checkObserved(t, "first read", m.takeGit(), []observed{{lastPack(), nil}}, 0)
	readAt(t, g)
	checkObserved(t, "a poll with nothing new", m.takeGit(), []observed{{0, nil}}, 0)
	old := g.LastFetched()
	repo.CommitSigned(t, nil, fleetWith("web", "db"), "second")
	readAt(t, g)
	checkObserved(t, "a new commit", m.takeGit(), []observed{{lastPack(), nil}}, 0)

	// The pack over the bound: what was received counts, and it is an error.
	repo.CommitSigned(t, nil, map[string]string{"data/blob": noisyText(100)}, "large")
	g.maxFetch = 1000
	if _, err := g.Read(t.Context()); !errors.Is(err, ErrFetchTooLarge) {
		t.Fatalf("Read over the bound: %v, want ErrFetchTooLarge", err)
	}
	checkObserved(t, "a pack over the bound", m.takeGit(), []observed{{-1, ErrFetchTooLarge}}, 1000)
	g.maxFetch = MaxFetchBytes
	readAt(t, g)
	checkObserved(t, "the same pack under the bound", m.takeGit(), []observed{{lastPack(), nil}}, 0)

	// An older commit is in the shallow clone's history only: fetched on its own.
	if _, err := g.Fleet(t.Context(), old); err != nil {
		t.Fatalf("Fleet(%s): %v", old, err)
	}
	if got := m.takeGit(); len(got) > 1 || (len(got) == 1 && got[0].err != nil) {
		t.Errorf("reading an older commit: observed %+v, want at most one fetch without error", got)
	}

	srv.FailNext(1)
	if _, err := g.Read(t.Context()); !errors.Is(err, ErrFetch) {
		t.Fatalf("Read with the server failing: %v, want ErrFetch", err)
	}
	checkObserved(t, "a failing server", m.takeGit(), []observed{{0, ErrFetch}}, 0)
}

// TestGitReportsTimeoutNotCancel: a remote that never answers is a failed fetch when
// the timeout ends it, not when the caller cancels it.
func TestGitReportsTimeoutNotCancel(t *testing.T) {
	silent := testenv.ServeSilent(t)
	m := &recordingMetrics{}
	g := newGit(t, GitConfig{URL: "http://" + silent.Addr + "/fleet.git", Timeout: 200 * time.Millisecond, Metrics: m})
	if _, err := g.Read(t.Context()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Read from a silent server: %v, want ErrTimeout", err)
	}
	checkObserved(t, "timed out", m.waitGit(t, 1), []observed{{0, ErrTimeout}}, 0)

	g = newGit(t, GitConfig{URL: "http://" + silent.Addr + "/fleet.git", Timeout: time.Minute, Metrics: m})
	ctx, cancel := context.WithCancel(t.Context())
	accepted := silent.Accepted()
	go func() {
		for silent.Accepted() == accepted && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := g.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read cancelled: %v, want context.Canceled", err)
	}
	checkObserved(t, "cancelled", m.waitGit(t, 1), []observed{{0, nil}}, 0)
}

// TestGitPinnedCommitNotReported: a pinned commit the clone has asks the remote
// nothing, and nothing is reported.
func TestGitPinnedCommitNotReported(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	commit := repo.CommitSigned(t, nil, fleetWith("web"), "first")
	m := &recordingMetrics{}
	g := newGit(t, GitConfig{URL: repo.URL(), Ref: "commit:" + commit, Metrics: m})
	readAt(t, g)
	if got := m.takeGit(); len(got) != 1 || got[0].bytes <= 0 || got[0].err != nil {
		t.Errorf("first read of a pinned commit: observed %+v, want one fetch of some bytes", got)
	}
	readAt(t, g)
	checkObserved(t, "the pinned commit again", m.takeGit(), nil, 0)
}

// checksumMismatch stands for a *ChecksumError in the wants of checkObserved.
var checksumMismatch = errors.New("checksum mismatch")

// TestImageCacheReportsDownloads: each download into the cache, http or file://, is
// reported once with the bytes read and its error; a hit, and a URL refused before any
// I/O, are not reported.
func TestImageCacheReportsDownloads(t *testing.T) {
	content := []byte("a golden image, small for the test")
	srv := newImageServer(t, content)
	root := t.TempDir()
	file := filepath.Join(root, "disk.img")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	n := int64(len(content))
	sum, other := digestOf(content), digestOf([]byte("something else"))

	tests := []struct {
		name    string
		a       Artifact
		maxSize int64
		want    []observed
	}{
		{name: "http", a: Artifact{URL: srv.URL + "/disk.img", SHA256: sum}, want: []observed{{n, nil}}},
		{name: "file", a: Artifact{URL: "file://" + file, SHA256: sum}, want: []observed{{n, nil}}},
		{name: "checksum mismatch", a: Artifact{URL: srv.URL + "/disk.img", SHA256: other}, want: []observed{{n, checksumMismatch}}},
		{name: "not found", a: Artifact{URL: srv.URL + "/missing", SHA256: sum}, want: []observed{{0, ErrImageUnavailable}}},
		{name: "too big", a: Artifact{URL: srv.URL + "/disk.img", SHA256: sum}, maxSize: n - 1, want: []observed{{0, ErrImageRefused}}},
		{name: "refused before any I/O", a: Artifact{URL: "file:///etc/passwd", SHA256: sum}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &recordingMetrics{}
			cfg := allowLocal()
			cfg.Roots, cfg.MaxSize, cfg.Metrics = []string{root}, tt.maxSize, m
			c, _ := newCache(t, cfg)
			_, err := c.Get(t.Context(), tt.a)
			if (err != nil) != (len(tt.want) == 0 || tt.want[0].err != nil) {
				t.Errorf("Get: %v", err)
			}
			got := m.takeImages()
			var ce *ChecksumError
			for i := range got {
				if errors.As(got[i].err, &ce) {
					got[i].err = checksumMismatch
				}
			}
			checkObserved(t, tt.name, got, tt.want, 0)
			if err != nil {
				return
			}
			// A hit reads nothing and is not reported.
			if _, err := c.Get(t.Context(), tt.a); err != nil {
				t.Fatal(err)
			}
			checkObserved(t, tt.name+", cached", m.takeImages(), nil, 0)
		})
	}
}

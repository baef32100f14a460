package sources

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// The history the figures are about: 10,000 commits, 50 MB.
const (
	bigHistoryCommits = 10000
	bigHistoryBytes   = 50 << 20
)

func benchFleet() string { return "services:\n" + service("web") }

// cpuTime is the CPU this process has used, user and system: with the git server in
// another process (git daemon), it is Drover's own time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGitPollNoChange: a poll where nothing changed, on a 10-commit and a
// 10,000-commit, 50 MB repository, over git:// from a real git daemon. The target:
// under 20 ms of Drover's own time (cpu-ms/op), the same on both within 20%.
func BenchmarkGitPollNoChange(b *testing.B) {
	for _, size := range []struct {
		commits int
		bytes   int64
	}{{10, 10 << 10}, {bigHistoryCommits, bigHistoryBytes}} {
		b.Run(fmt.Sprintf("commits=%d", size.commits), func(b *testing.B) {
			src := testenv.HistoryRepo(b, size.commits, size.bytes, benchFleet())
			daemon := testenv.ServeGitDaemon(b, filepath.Dir(src))
			g, err := NewGit(GitConfig{URL: daemon.RepoURL(filepath.Base(src)), Dir: filepath.Join(b.TempDir(), "clone")}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if _, err := g.Read(ctx); err != nil {
				b.Fatal(err)
			}
			fetches := g.fetches
			b.ResetTimer()
			cpu := cpuTime(b)
			for range b.N {
				if _, err := g.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			if g.fetches != fetches {
				b.Fatalf("polls with nothing new fetched %d packs", g.fetches-fetches)
			}
		})
	}
}

// BenchmarkGitFetchOneCommit: a fetch of one new commit on the 10,000-commit
// repository transfers only that commit's objects (objects/op, bytes/op: one changed
// file two directories down is 5 objects).
func BenchmarkGitFetchOneCommit(b *testing.B) {
	src := testenv.CloneBare(b, testenv.HistoryRepo(b, bigHistoryCommits, bigHistoryBytes, benchFleet()))
	daemon := testenv.ServeGitDaemon(b, filepath.Dir(src))
	g, err := NewGit(GitConfig{URL: daemon.RepoURL(filepath.Base(src)), Dir: filepath.Join(b.TempDir(), "clone")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.Read(ctx); err != nil {
		b.Fatal(err)
	}
	firstMB := float64(g.stats.Bytes) / (1 << 20)
	var objects, bytes int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		want := testenv.AppendCommit(b, src, map[string]string{"data/d01/f001.bin": fmt.Sprintf("new content %d\n", i)}, "one more")
		b.StartTimer()
		rev, err := g.Read(ctx)
		if err != nil || rev.Commit != want {
			b.Fatalf("Read = %s, %v; want %s", rev.Commit, err, want)
		}
		objects += int64(g.stats.Objects)
		bytes += g.stats.Bytes
	}
	b.ReportMetric(firstMB, "first-fetch-MB")
	b.ReportMetric(float64(objects)/float64(b.N), "objects/op")
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/op")
}

package sources

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/drover-dev/drover/testenv"
)

func TestParseRef(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	for _, tt := range []struct {
		in, kind, name, err string
	}{
		{in: "branch:main", kind: "branch", name: "main"},
		{in: "branch:release/1.x", kind: "branch", name: "release/1.x"},
		{in: "tag:v1.2.0", kind: "tag", name: "v1.2.0"},
		{in: "semver:^1.2", kind: "semver", name: "^1.2"},
		{in: "semver:>=1.0.0-rc.1 <2", kind: "semver", name: ">=1.0.0-rc.1 <2"},
		{in: "commit:" + sha, kind: "commit", name: sha},
		{in: "main", err: "want branch:NAME"},
		{in: "branch:", err: "want branch:NAME"},
		{in: "branch:a..b", err: "invalid branch name"},
		{in: "tag:bad tag", err: "invalid tag name"},
		{in: "semver:not a range", err: "invalid semver range"},
		{in: "commit:abc123", err: "full 40-hex"},
		{in: "commit:" + strings.ToUpper(sha), err: "full 40-hex"},
		{in: "head:main", err: `unknown kind "head"`},
	} {
		ref, err := ParseRef(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParseRef(%q) = %v, want an error naming it and containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || string(ref.Kind) != tt.kind || ref.Name != tt.name || ref.String() != tt.in {
			t.Errorf("ParseRef(%q) = %s %q %v; want %s %q", tt.in, ref.Kind, ref.Name, err, tt.kind, tt.name)
		}
	}
}

func TestRefMoves(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	for _, tt := range []struct {
		ref, pushed string
		want        bool
	}{
		{"branch:main", "refs/heads/main", true},
		{"branch:main", "refs/heads/main2", false},
		{"branch:main", "refs/tags/main", false},
		{"tag:v1", "refs/tags/v1", true},
		{"tag:v1", "refs/tags/v1.0", false},
		{"tag:v1", "refs/heads/v1", false},
		{"semver:^1", "refs/tags/v1.3.0", true},
		{"semver:^1", "refs/heads/main", false},
		{"commit:" + sha, "refs/heads/main", false},
	} {
		ref, err := ParseRef(tt.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := ref.Moves(tt.pushed); got != tt.want {
			t.Errorf("%s.Moves(%s) = %v, want %v", tt.ref, tt.pushed, got, tt.want)
		}
	}
}

// The semver choice, on tags as a remote advertises them.
func TestSemverHighest(t *testing.T) {
	tags := []string{"v1.0.0", "v1.2.0", "1.2.1", "v1.3.0-rc.1", "v2.0.0", "v2.1.0-beta.1", "latest", "v0.9"}
	adv := advertised{refs: map[string]plumbing.Hash{"refs/heads/v9.0.0": plumbing.NewHash("ff")}}
	for i, tag := range tags {
		adv.refs["refs/tags/"+tag] = plumbing.NewHash(strings.Repeat(string(rune('a'+i)), 40))
	}
	for _, tt := range []struct{ rng, want string }{
		{"^1", "1.2.1"},
		{"~1.2", "1.2.1"},
		{">=1.0.0", "v2.0.0"},
		{"<1", "v0.9"},
		{">=1.3.0-rc.0 <2", "v1.3.0-rc.1"}, // the range names a pre-release
		{"^2.1.0-0", "v2.1.0-beta.1"},
		{"^2.1", ""}, // v2.1.0-beta.1 only, and the range names no pre-release
		{">=3", ""},  // a branch named like a version does not count
	} {
		ref, err := ParseRef("semver:" + tt.rng)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ref.resolve(adv)
		switch {
		case tt.want == "" && !errors.Is(err, ErrRefNotFound):
			t.Errorf("semver %q: got %q, %v; want ErrRefNotFound", tt.rng, res.tag, err)
		case tt.want != "" && (err != nil || res.tag != tt.want):
			t.Errorf("semver %q: got %q, %v; want %q", tt.rng, res.tag, err, tt.want)
		}
	}
}

// logBuffer collects a source's logs.
func logBuffer() (*slog.Logger, *testenv.SyncBuffer) {
	var buf testenv.SyncBuffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func fleetWith(names ...string) map[string]string {
	var b strings.Builder
	b.WriteString("services:\n")
	for _, n := range names {
		b.WriteString(service(n))
	}
	return map[string]string{"fleet.yaml": b.String()}
}

func readAt(t *testing.T, g *Git) Revision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rev, err := g.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return rev
}

func TestGitTracksTags(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	one := repo.CommitSigned(t, nil, fleetWith("one"), "one")
	two := repo.CommitSigned(t, nil, fleetWith("two"), "two")
	three := repo.CommitSigned(t, nil, fleetWith("three"), "three")
	repo.Tag(t, "v1.0.0", one, true, nil)
	repo.Tag(t, "v1.1.0", two, false, nil)
	repo.Tag(t, "v2.0.0-rc.1", three, true, nil)
	repo.Tag(t, "prod", one, true, nil)

	t.Run("tag, moved", func(t *testing.T) {
		log, logs := logBuffer()
		g, err := NewGit(GitConfig{URL: repo.URL(), Ref: "tag:prod", Dir: filepath.Join(t.TempDir(), "clone")}, log)
		if err != nil {
			t.Fatal(err)
		}
		if rev := readAt(t, g); rev.Commit != one || rev.Tag != "prod" || rev.Ref != "tag:prod" || serviceNames(rev.Fleet)[0] != "one" {
			t.Fatalf("Read = %s ref %q tag %q %v; want %s tag prod [one]", rev.Commit, rev.Ref, rev.Tag, serviceNames(rev.Fleet), one)
		}
		repo.Tag(t, "prod", two, true, nil)
		if rev := readAt(t, g); rev.Commit != two || serviceNames(rev.Fleet)[0] != "two" {
			t.Fatalf("Read after the tag moved = %s %v; want %s [two]", rev.Commit, serviceNames(rev.Fleet), two)
		}
		if want := "tag moved"; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "from="+one) || !strings.Contains(logs.String(), "to="+two) {
			t.Errorf("logs do not say %q from %s to %s:\n%s", want, one, two, logs)
		}
		// A tag moved back to a commit the clone has costs no fetch.
		repo.Tag(t, "prod", one, false, nil)
		before := g.fetches
		if rev := readAt(t, g); rev.Commit != one {
			t.Errorf("Read after the tag moved back = %s, want %s", rev.Commit, one)
		}
		if g.fetches != before {
			t.Errorf("moving to a lightweight tag of a known commit fetched %d packs, want 0", g.fetches-before)
		}
	})

	t.Run("semver", func(t *testing.T) {
		for _, tt := range []struct{ rng, commit, tag string }{
			{"^1", two, "v1.1.0"},
			{"~1.0", one, "v1.0.0"},
			{">=1", two, "v1.1.0"}, // v2.0.0-rc.1 is a pre-release the range does not name
			{">=2.0.0-0", three, "v2.0.0-rc.1"},
		} {
			g := newGit(t, GitConfig{URL: repo.URL(), Ref: "semver:" + tt.rng})
			if rev := readAt(t, g); rev.Commit != tt.commit || rev.Tag != tt.tag {
				t.Errorf("semver:%s = %s tag %q, want %s tag %q", tt.rng, rev.Commit, rev.Tag, tt.commit, tt.tag)
			}
		}
		g := newGit(t, GitConfig{URL: repo.URL(), Ref: "semver:^3"})
		if _, err := g.Read(context.Background()); !errors.Is(err, ErrFetch) || !errors.Is(err, ErrRefNotFound) || !strings.Contains(err.Error(), `semver "^3"`) {
			t.Errorf("semver:^3 = %v, want ErrFetch and ErrRefNotFound naming the range", err)
		}
		// A new release in range is picked up at the next poll.
		four := repo.CommitSigned(t, nil, fleetWith("four"), "four")
		g = newGit(t, GitConfig{URL: repo.URL(), Ref: "semver:^1"})
		readAt(t, g)
		repo.Tag(t, "v1.2.0", four, true, nil)
		if rev := readAt(t, g); rev.Commit != four || rev.Tag != "v1.2.0" {
			t.Errorf("after tagging v1.2.0: %s tag %q, want %s v1.2.0", rev.Commit, rev.Tag, four)
		}
	})

	t.Run("pinned commit never asks the remote again", func(t *testing.T) {
		root := filepath.Dir(repo.Dir)
		srv := testenv.ServeGitHTTP(t, root, testenv.GitHTTPOptions{})
		g := newGit(t, GitConfig{URL: srv.RepoURL(filepath.Base(repo.Dir)), Ref: "commit:" + two})
		if rev := readAt(t, g); rev.Commit != two || rev.Tag != "" || serviceNames(rev.Fleet)[0] != "two" {
			t.Fatalf("Read = %s %q %v, want %s [two]", rev.Commit, rev.Tag, serviceNames(rev.Fleet), two)
		}
		asked := srv.Requests()
		for range 3 {
			readAt(t, g)
		}
		if got := srv.Requests() - asked; got != 0 {
			t.Errorf("three more reads of a pinned commit made %d requests, want 0", got)
		}
	})
}

// A poll where nothing moved lists the remote's refs and does nothing else; a new
// commit brings only its own objects.
func TestGitCheapPolls(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	files := fleetWith("web")
	for i := range 50 {
		files[filepath.Join("data", string(rune('a'+i%26))+strings.Repeat("x", i/26), "blob")] = strings.Repeat("payload ", 100+i)
	}
	repo.CommitSigned(t, nil, files, "first")
	srv := testenv.ServeGitHTTP(t, filepath.Dir(repo.Dir), testenv.GitHTTPOptions{})
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "clone")} {
		g := newGit(t, GitConfig{URL: srv.RepoURL(filepath.Base(repo.Dir)), Dir: dir})
		first := readAt(t, g)
		if g.fetches != 1 {
			t.Fatalf("first read fetched %d packs, want 1", g.fetches)
		}
		if shallow, _ := g.repo.Storer.Shallow(); len(shallow) != 1 {
			t.Errorf("first fetch left shallow commits %v, want the head alone (depth 1)", shallow)
		}

		asked := srv.Requests()
		clone := snapshotDir(t, dir)
		again := readAt(t, g)
		if after := snapshotDir(t, dir); after != clone {
			t.Errorf("a poll with nothing new wrote to the clone:\nbefore:\n%s\nafter:\n%s", clone, after)
		}
		if g.fetches != 1 {
			t.Errorf("a poll with nothing new fetched %d packs", g.fetches-1)
		}
		if got := srv.Requests() - asked; got != 1 {
			t.Errorf("a poll with nothing new made %d requests, want 1 (the refs)", got)
		}
		if again.Fleet != first.Fleet {
			t.Errorf("a poll with nothing new parsed the fleet again")
		}

		// One changed file two directories down: the commit, the root tree, data,
		// data/b and the blob.
		repo.CommitSigned(t, nil, map[string]string{"data/b/blob": "changed for " + dir}, "second")
		readAt(t, g)
		if g.fetches != 2 || g.stats.Objects != 5 {
			t.Errorf("fetching one new commit: %d packs, last %d objects (%d bytes); want 2 packs, 5 objects", g.fetches, g.stats.Objects, g.stats.Bytes)
		}
		t.Logf("one new commit: %d objects, %d bytes", g.stats.Objects, g.stats.Bytes)

		// A small change to a large file may come as a delta against the blob the
		// clone has (a thin pack): it must be resolved against the clone.
		big := noisyText(2000)
		repo.CommitSigned(t, nil, map[string]string{"data/c/blob": big + dir}, "large")
		readAt(t, g)
		repo.CommitSigned(t, nil, map[string]string{"data/c/blob": big + dir + "more\n"}, "small change")
		rev := readAt(t, g)
		c, err := g.repo.CommitObject(plumbing.NewHash(rev.Commit))
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.File("data/c/blob")
		if err != nil {
			t.Fatalf("read the changed file: %v", err)
		}
		if got, _ := f.Contents(); got != big+dir+"more\n" {
			t.Errorf("the changed file has %d bytes, want %d", len(got), len(big+dir+"more\n"))
		}
		t.Logf("a one-line change to a %d-byte file: %d objects, %d bytes", len(big), g.stats.Objects, g.stats.Bytes)
	}
}

// A revert brings back a blob only history holds: an incremental fetch into the
// shallow clone must bring it, as the server cannot assume the clone has it.
func TestGitRevertIntoShallowClone(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	one := repo.CommitSigned(t, nil, fleetWith("one"), "one")
	repo.CommitSigned(t, nil, fleetWith("two"), "two")
	g := newGit(t, GitConfig{URL: repo.URL(), Dir: filepath.Join(t.TempDir(), "clone")})
	readAt(t, g)
	testenv.Git(t, repo.Dir, nil, "revert", "--no-edit", "HEAD")
	// With reachability bitmaps, as large hosts have, the server excludes exactly
	// what the haves reach.
	testenv.Git(t, repo.Dir, nil, "repack", "-adb", "-q")
	rev := readAt(t, g)
	if names := serviceNames(rev.Fleet); len(names) != 1 || names[0] != "one" {
		t.Errorf("after the revert: %v, want [one]", names)
	}
	// A rollback's predecessor, older than the clone, is fetched on demand.
	f, err := g.Fleet(context.Background(), one)
	if err != nil || serviceNames(f)[0] != "one" {
		t.Errorf("Fleet(%s) = %v, %v; want [one]", one, f, err)
	}
}

// History a rollback needs is fetched by SHA, or in full from a server that refuses
// SHA wants (git daemon's default, as http-backend's).
func TestGitHistoryOnDemand(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	old := repo.CommitSigned(t, nil, fleetWith("old"), "old")
	for i := range 3 {
		repo.CommitSigned(t, nil, fleetWith("web", "n"+string(rune('a'+i))), "next")
	}
	for _, allow := range []bool{true, false} {
		testenv.Git(t, repo.Dir, nil, "config", "uploadpack.allowAnySHA1InWant", map[bool]string{true: "true", false: "false"}[allow])
		g := newGit(t, GitConfig{URL: "file://" + repo.Dir})
		readAt(t, g)
		f, err := g.Fleet(context.Background(), old)
		if err != nil || serviceNames(f)[0] != "old" {
			t.Fatalf("allowAnySHA1InWant=%v: Fleet(old) = %v, %v; want [old]", allow, f, err)
		}
		shallow, _ := g.repo.Storer.Shallow()
		if full := len(shallow) == 0; full == allow {
			t.Errorf("allowAnySHA1InWant=%v: shallow commits after the history fetch: %v", allow, shallow)
		}
		missing := strings.Repeat("0", 39) + "1"
		for i := range 2 {
			before := g.dials
			if _, err := g.Fleet(context.Background(), missing); !errors.Is(err, plumbing.ErrObjectNotFound) || !strings.Contains(err.Error(), missing) {
				t.Errorf("allowAnySHA1InWant=%v: Fleet of a commit the remote lacks = %v, want an error naming it", allow, err)
			}
			// Asked again while the ref has not moved: the remote is not asked.
			if i == 1 && g.dials != before {
				t.Errorf("allowAnySHA1InWant=%v: a commit the remote lacks was asked for again", allow)
			}
		}
	}
}

func TestGitRefConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg       GitConfig
		ref, errs string
	}{
		{cfg: GitConfig{URL: "/r"}, ref: "branch:main"},
		{cfg: GitConfig{URL: "/r", Branch: "prod"}, ref: "branch:prod"},
		{cfg: GitConfig{URL: "/r", Ref: "tag:v1", Branch: ""}, ref: "tag:v1"},
		{cfg: GitConfig{URL: "/r", Ref: "branch:prod", Branch: "prod"}, ref: "branch:prod"},
		{cfg: GitConfig{URL: "/r", Ref: "branch:prod", Branch: "main"}, errs: "disagree"},
		{cfg: GitConfig{URL: "/r", Ref: "tag:v1", Branch: "main"}, errs: "disagree"},
		{cfg: GitConfig{URL: "/r", Ref: "nope"}, errs: "want branch:NAME"},
		{cfg: GitConfig{URL: "/r", VerifySignatures: true}, errs: "needs trusted keys"},
	} {
		g, err := NewGit(tt.cfg, nil)
		switch {
		case tt.errs != "" && (err == nil || !strings.Contains(err.Error(), tt.errs)):
			t.Errorf("NewGit(%+v) = %v, want an error containing %q", tt.cfg, err, tt.errs)
		case tt.errs == "" && (err != nil || g.Config().Ref != tt.ref):
			t.Errorf("NewGit(%+v) = %v; ref %v, want %s", tt.cfg, err, g, tt.ref)
		}
	}
}

// A pack over the bound is refused, and the clone still works afterwards.
func TestGitFetchBound(t *testing.T) {
	requireGit(t)
	repo := testenv.NewRepo(t)
	files := fleetWith("web")
	files["data/blob"] = noisyText(100)
	want := repo.CommitSigned(t, nil, files, "large")
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "clone")} {
		g := newGit(t, GitConfig{URL: repo.URL(), Dir: dir})
		g.maxFetch = 1000
		_, err := g.Read(context.Background())
		if !errors.Is(err, ErrFetchTooLarge) || !errors.Is(err, ErrFetch) {
			t.Fatalf("dir %q: Read with a 1000-byte bound = %v, want ErrFetch and ErrFetchTooLarge", dir, err)
		}
		g.maxFetch = MaxFetchBytes
		if rev := readAt(t, g); rev.Commit != want {
			t.Errorf("dir %q: Read after raising the bound = %s, want %s", dir, rev.Commit, want)
		}
	}
}

// noisyText is n lines that compress poorly, as real content does.
func noisyText(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "line %d %x\n", i, sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
	}
	return b.String()
}

// snapshotDir lists every file under dir with its size and modification time; "" for
// no dir.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	if dir == "" {
		return ""
	}
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, info.Size(), info.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

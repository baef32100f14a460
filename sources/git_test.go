package sources

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/drover-dev/drover/testenv"
)

// testRepo is a real git repository with a worktree, as an operator's would be.
type testRepo struct {
	dir  string
	repo *git.Repository
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fleet-repo")
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		t.Fatalf("init repo: %v", err)
	}
	return &testRepo{dir: dir, repo: repo}
}

// commit writes files (a nil content deletes the file) and commits them on the current
// branch, returning the commit's SHA.
func (r *testRepo) commit(t *testing.T, files map[string]*string) string {
	t.Helper()
	wt, err := r.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if content == nil {
			if _, err := wt.Remove(name); err != nil {
				t.Fatalf("remove %s: %v", name, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(*content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
	}
	sig := &object.Signature{Name: "Test", Email: "test@example.invalid", When: time.Unix(1700000000, 0)}
	h, err := wt.Commit("change", &git.CommitOptions{Author: sig, AllowEmptyCommits: true})
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return h.String()
}

func ptr(s string) *string { return &s }

// requireGit skips (or fails in CI) when the git binary is missing: go-git serves file
// URLs and local paths by running git-upload-pack.
func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not installed (go-git runs git-upload-pack for local repositories)")
	}
}

func newGit(t *testing.T, cfg GitConfig) *Git {
	t.Helper()
	g, err := NewGit(cfg, nil)
	if err != nil {
		t.Fatalf("NewGit(%+v): %v", cfg, err)
	}
	return g
}

func serviceNames(f *Fleet) []string {
	var out []string
	for _, s := range f.Services {
		out = append(out, s.Name)
	}
	return out
}

func TestGitReadFollowsBranch(t *testing.T) {
	requireGit(t)
	r := newTestRepo(t)
	first := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})

	for _, tc := range []struct {
		name string
		url  string
		dir  string
	}{
		{"plain path, clone on disk", r.dir, filepath.Join(t.TempDir(), "clone")},
		{"file URL, clone in memory", "file://" + r.dir, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			g := newGit(t, GitConfig{URL: tc.url, Dir: tc.dir})
			if _, ok := g.Last(); ok {
				t.Errorf("Last() before any read reported a revision")
			}
			rev, err := g.Read(ctx)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if rev.Commit != first || !reflect.DeepEqual(serviceNames(rev.Fleet), []string{"web"}) {
				t.Fatalf("Read = %s %v, want %s [web]", rev.Commit, serviceNames(rev.Fleet), first)
			}
			if got := rev.Fleet.Services[0].Pos.File; got != "fleet.yaml" {
				t.Errorf("service position file = %q, want the repository path fleet.yaml", got)
			}
			// Fetching again with nothing new is not an error.
			if commit, err := g.Fetch(ctx); err != nil || commit != first {
				t.Fatalf("second Fetch = %s, %v; want %s", commit, err, first)
			}
		})
	}

	t.Run("new commits are seen on the next fetch", func(t *testing.T) {
		ctx := context.Background()
		g := newGit(t, GitConfig{URL: r.dir, Dir: filepath.Join(t.TempDir(), "clone")})
		if _, err := g.Read(ctx); err != nil {
			t.Fatalf("Read: %v", err)
		}
		second := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web") + service("api"))})
		rev, err := g.Read(ctx)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if rev.Commit != second || !reflect.DeepEqual(serviceNames(rev.Fleet), []string{"web", "api"}) {
			t.Errorf("Read = %s %v, want %s [web api]", rev.Commit, serviceNames(rev.Fleet), second)
		}
		// An older commit can still be read, e.g. to describe what is running.
		old, err := g.Fleet(ctx, first)
		if err != nil || !reflect.DeepEqual(serviceNames(old), []string{"web"}) {
			t.Errorf("Fleet(first) = %v, %v; want [web]", old, err)
		}
		if last, ok := g.Last(); !ok || last.Commit != second {
			t.Errorf("Last() = %s, %v; want %s", last.Commit, ok, second)
		}
	})
}

// A force-push (history rewritten) is followed: the branch is the desired state.
func TestGitFollowsForcePush(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	r := newTestRepo(t)
	base := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("api"))})
	g := newGit(t, GitConfig{URL: r.dir, Dir: filepath.Join(t.TempDir(), "clone")})
	if _, err := g.Fetch(ctx); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	ref := plumbing.NewHashReference(plumbing.NewBranchReferenceName("main"), plumbing.NewHash(base))
	if err := r.repo.Storer.SetReference(ref); err != nil {
		t.Fatal(err)
	}
	if commit, err := g.Fetch(ctx); err != nil || commit != base {
		t.Errorf("Fetch after force-push = %s, %v; want %s", commit, err, base)
	}
}

func TestGitOverHTTP(t *testing.T) {
	r := newTestRepo(t)
	want := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	srv := testenv.ServeGitHTTP(t, filepath.Dir(r.dir), testenv.GitHTTPOptions{})

	g := newGit(t, GitConfig{URL: srv.RepoURL(filepath.Base(r.dir)), Dir: filepath.Join(t.TempDir(), "clone")})
	rev, err := g.Read(context.Background())
	if err != nil {
		t.Fatalf("Read over HTTP: %v", err)
	}
	if rev.Commit != want || !reflect.DeepEqual(serviceNames(rev.Fleet), []string{"web"}) {
		t.Errorf("Read = %s %v, want %s [web]", rev.Commit, serviceNames(rev.Fleet), want)
	}
}

func TestGitReusesClone(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	r := newTestRepo(t)
	commit := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	dir := filepath.Join(t.TempDir(), "state", "git")
	if _, err := newGit(t, GitConfig{URL: r.dir, Dir: dir}).Read(ctx); err != nil {
		t.Fatalf("Read: %v", err)
	}

	// A restarted Drover reads a known commit from the clone without fetching, even
	// with the remote gone.
	if err := os.RemoveAll(r.dir); err != nil {
		t.Fatal(err)
	}
	restarted := newGit(t, GitConfig{URL: r.dir, Dir: dir})
	f, err := restarted.Fleet(ctx, commit)
	if err != nil || !reflect.DeepEqual(serviceNames(f), []string{"web"}) {
		t.Fatalf("Fleet from reused clone = %v, %v; want [web]", f, err)
	}

	other := filepath.Join(t.TempDir(), "other-repo")
	_, err = NewGit(GitConfig{URL: other, Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), r.dir) || !strings.Contains(err.Error(), other) {
		t.Errorf("NewGit with a clone of another URL: got %v, want an error naming %s and %s", err, r.dir, other)
	}

	busy := t.TempDir()
	if err := os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGit(t, GitConfig{URL: other, Dir: busy})
	if _, err := g.Fetch(ctx); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Fetch into a non-empty non-repository dir: got %v, want an error saying it is not empty", err)
	}
}

func TestGitFetchErrors(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	r := newTestRepo(t)
	r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	missing := filepath.Join(t.TempDir(), "no-such-repo")

	tests := []struct {
		name     string
		cfg      GitConfig
		ctx      func() context.Context
		contains []string
		isBranch bool
	}{
		{name: "missing local repository", cfg: GitConfig{URL: missing}, contains: []string{missing, `"main"`}},
		{name: "closed port", cfg: GitConfig{URL: "http://127.0.0.1:1/fleet.git"}, contains: []string{"http://127.0.0.1:1/fleet.git", `"main"`}},
		{name: "missing branch", cfg: GitConfig{URL: r.dir, Branch: "prod"}, contains: []string{r.dir, `"prod"`, "branch not found"}, isBranch: true},
		{name: "cancelled", cfg: GitConfig{URL: r.dir}, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, contains: []string{"context canceled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctx
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			tt.cfg.Dir = filepath.Join(t.TempDir(), "clone")
			_, err := newGit(t, tt.cfg).Fetch(ctx)
			if !errors.Is(err, ErrFetch) {
				t.Fatalf("Fetch error = %v, want ErrFetch", err)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Fetch error %q does not contain %q", err, s)
				}
			}
			if got := errors.Is(err, ErrBranchNotFound); got != tt.isBranch {
				t.Errorf("errors.Is(err, ErrBranchNotFound) = %v, want %v", got, tt.isBranch)
			}
		})
	}

	t.Run("failure after success keeps the last revision", func(t *testing.T) {
		g := newGit(t, GitConfig{URL: r.dir, Dir: filepath.Join(t.TempDir(), "clone")})
		good, err := g.Read(ctx)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if err := os.Rename(r.dir, r.dir+".moved"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(r.dir+".moved", r.dir)
		if _, err := g.Read(ctx); !errors.Is(err, ErrFetch) {
			t.Fatalf("Read with the remote gone = %v, want ErrFetch", err)
		}
		if last, ok := g.Last(); !ok || last.Commit != good.Commit || last.Fleet == nil {
			t.Errorf("Last() = %+v, %v; want %s", last, ok, good.Commit)
		}
		if got := g.LastFetched(); got != good.Commit {
			t.Errorf("LastFetched() = %s, want %s", got, good.Commit)
		}
	})
}

func TestGitBadRevisions(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	r := newTestRepo(t)
	good := r.commit(t, map[string]*string{
		"fleet.yaml":      ptr("services:\n" + service("web")),
		"fleet/a.yaml":    ptr("services:\n" + service("web")),
		"fleet/b.yaml":    ptr("services:\n" + service("api")),
		"fleet/notes.txt": ptr("ignored"),
	})

	t.Run("invalid fleet", func(t *testing.T) {
		g := newGit(t, GitConfig{URL: r.dir})
		if _, err := g.Read(ctx); err != nil {
			t.Fatalf("Read: %v", err)
		}
		bad := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n  - name: web\n    version: v2\n    port: 0\n")})
		defer r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
		rev, err := g.Read(ctx)
		var revErr *RevisionError
		if !errors.As(err, &revErr) || revErr.Commit != bad {
			t.Fatalf("Read = %v, want a *RevisionError for %s", err, bad)
		}
		if rev.Commit != bad || rev.Fleet != nil {
			t.Errorf("Read revision = %s %v, want %s without a fleet", rev.Commit, rev.Fleet, bad)
		}
		var errs Errors
		if !errors.As(err, &errs) {
			t.Fatalf("RevisionError does not unwrap to Errors: %v", err)
		}
		want := "commit " + bad[:12] + ": fleet.yaml:2:5: service web: missing required field \"image\"\n" +
			"fleet.yaml:2:5: service web: missing required field \"check\"\n" +
			"fleet.yaml:4:11: service web: port must be between 1 and 65535, got 0"
		if err.Error() != want {
			t.Errorf("error:\n got %s\nwant %s", err, want)
		}
		if last, ok := g.Last(); !ok || last.Commit != good {
			t.Errorf("Last() = %s, %v; want the good commit %s", last.Commit, ok, good)
		}
	})

	t.Run("directory path", func(t *testing.T) {
		g := newGit(t, GitConfig{URL: r.dir, Path: "fleet/"})
		commit, err := g.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		f, err := g.Fleet(ctx, good)
		if err != nil {
			t.Fatalf("Fleet: %v", err)
		}
		if got := serviceNames(f); !reflect.DeepEqual(got, []string{"web", "api"}) {
			t.Errorf("services = %v, want [web api]", got)
		}
		if got := f.Services[1].Pos.File; got != "fleet/b.yaml" {
			t.Errorf("position file = %q, want fleet/b.yaml", got)
		}
		// The head may differ from good by now; it has the same fleet directory.
		if _, err := g.Fleet(ctx, commit); err != nil {
			t.Errorf("Fleet(head): %v", err)
		}
	})

	t.Run("duplicate across directory files", func(t *testing.T) {
		r2 := newTestRepo(t)
		c := r2.commit(t, map[string]*string{
			"fleet/a.yaml": ptr("services:\n" + service("web")),
			"fleet/b.yaml": ptr("services:\n" + service("web")),
		})
		g := newGit(t, GitConfig{URL: r2.dir, Path: "fleet"})
		_, err := g.Read(ctx)
		want := "commit " + c[:12] + `: fleet/b.yaml:2:5: duplicate service name "web" (first declared at fleet/a.yaml:2:5)`
		if err == nil || err.Error() != want {
			t.Errorf("Read error:\n got %v\nwant %s", err, want)
		}
	})

	t.Run("missing path", func(t *testing.T) {
		g := newGit(t, GitConfig{URL: r.dir, Path: "deploy/fleet.yaml"})
		_, err := g.Read(ctx)
		var revErr *RevisionError
		if !errors.As(err, &revErr) || !errors.Is(err, ErrFleetNotFound) || !strings.Contains(err.Error(), "deploy/fleet.yaml") {
			t.Errorf("Read = %v, want a RevisionError wrapping ErrFleetNotFound naming deploy/fleet.yaml", err)
		}
	})

	t.Run("commit not fetched or malformed", func(t *testing.T) {
		g := newGit(t, GitConfig{URL: r.dir})
		if _, err := g.Fetch(ctx); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		for _, commit := range []string{"", "abc", strings.Repeat("0", 40), strings.ToUpper(good)} {
			if _, err := g.Fleet(ctx, commit); err == nil {
				t.Errorf("Fleet(%q) succeeded, want an error", commit)
			}
		}
	})
}

func TestNewGitValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  GitConfig
		want string
	}{
		{"no URL", GitConfig{}, "URL is required"},
		{"bad branch", GitConfig{URL: "/srv/fleet", Branch: "a..b"}, `invalid branch "a..b"`},
		{"absolute path", GitConfig{URL: "/srv/fleet", Path: "/etc/fleet.yaml"}, "must be relative"},
		{"path escapes", GitConfig{URL: "/srv/fleet", Path: "../fleet.yaml"}, "must be relative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGit(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewGit(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}

	g := newGit(t, GitConfig{URL: "relative/repo"})
	cfg := g.Config()
	wd, _ := os.Getwd()
	want := GitConfig{URL: filepath.Join(wd, "relative/repo"), Ref: "branch:main", Branch: "main", Path: "fleet.yaml", Timeout: DefaultGitTimeout}
	if cfg != want {
		t.Errorf("Config() = %+v, want %+v", cfg, want)
	}
}

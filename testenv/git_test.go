package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

func TestRepoCommits(t *testing.T) {
	r := NewRepo(t)
	if r.URL() != r.Dir {
		t.Errorf("URL: want %q, got %q", r.Dir, r.URL())
	}
	first := r.Commit(t, map[string]string{"fleet.yaml": "services: []\n", "dir/extra.yaml": "x: 1\n"}, "first")
	second := r.Commit(t, map[string]string{"dir/extra.yaml": "", "fleet.yaml": "services: [a]\n"}, "second")
	empty := r.Commit(t, nil, "no change") // a new revision with the same content

	repo, err := git.PlainOpen(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	if want := plumbing.NewBranchReferenceName("main"); head.Name() != want || head.Hash().String() != empty {
		t.Fatalf("HEAD: want %s at %s, got %s at %s", want, empty, head.Name(), head.Hash())
	}
	tests := []struct {
		sha   string
		files map[string]string // "" = absent
	}{
		{first, map[string]string{"fleet.yaml": "services: []\n", "dir/extra.yaml": "x: 1\n"}},
		{second, map[string]string{"fleet.yaml": "services: [a]\n", "dir/extra.yaml": ""}},
		{empty, map[string]string{"fleet.yaml": "services: [a]\n", "dir/extra.yaml": ""}},
	}
	for _, tt := range tests {
		if len(tt.sha) != 40 {
			t.Fatalf("want a full 40-hex SHA, got %q", tt.sha)
		}
		c, err := repo.CommitObject(plumbing.NewHash(tt.sha))
		if err != nil {
			t.Fatalf("commit %s: %v", tt.sha, err)
		}
		for name, want := range tt.files {
			f, err := c.File(name)
			got := ""
			if err == nil {
				if got, err = f.Contents(); err != nil {
					t.Fatal(err)
				}
			}
			if got != want {
				t.Errorf("%s at %s (%q): want %q, got %q", name, tt.sha[:8], c.Message, want, got)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "dir", "extra.yaml")); !os.IsNotExist(err) {
		t.Errorf("deleted file still in the worktree: %v", err)
	}
}

// TestRepoDeterministic: the fixed author and time make the same commits give the same
// SHAs, so tests can compare revisions across runs.
func TestRepoDeterministic(t *testing.T) {
	a, b := NewRepo(t), NewRepo(t)
	files := map[string]string{"fleet.yaml": "services: []\n"}
	if x, y := a.Commit(t, files, "m"), b.Commit(t, files, "m"); x != y {
		t.Errorf("same commit in two repos: want equal SHAs, got %s and %s", x, y)
	}
}

func TestCommitFilesRejectsBadPaths(t *testing.T) {
	r := NewRepo(t)
	for _, name := range []string{"", "/etc/passwd", "../escape", "a/../../escape", ".git/config", "./fleet.yaml", "a//b"} {
		_, err := r.CommitFiles(map[string]string{name: "x"}, "bad")
		if err == nil || !strings.Contains(err.Error(), "path") {
			t.Errorf("CommitFiles(%q): want a path error, got %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(r.Dir), "escape")); !os.IsNotExist(err) {
		t.Errorf("a rejected path was written outside the repository: %v", err)
	}
}

func TestInitRepoReopens(t *testing.T) {
	dir := t.TempDir()
	r, err := InitRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	sha, err := r.CommitFiles(map[string]string{"f": "1"}, "one")
	if err != nil {
		t.Fatal(err)
	}
	again, err := InitRepo(dir)
	if err != nil {
		t.Fatalf("InitRepo on an existing repository: %v", err)
	}
	repo, err := git.PlainOpen(again.Dir)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil || head.Hash().String() != sha {
		t.Errorf("history after reopening: want HEAD %s, got %v (%v)", sha, head, err)
	}
	if _, err := InitRepo(filepath.Join(dir, "f", "sub")); err == nil {
		t.Errorf("InitRepo under a regular file: want an error, got nil")
	}
}

func TestCommitFilesNotARepo(t *testing.T) {
	r := &Repo{Dir: t.TempDir()}
	if _, err := r.CommitFiles(map[string]string{"f": "1"}, "m"); err == nil || !strings.Contains(err.Error(), r.Dir) {
		t.Errorf("CommitFiles outside a repository: want an error naming %s, got %v", r.Dir, err)
	}
}

// TestGitHTTPServer: the server serves a real repository, only with the right
// password, and FailNext fails requests.
func TestGitHTTPServer(t *testing.T) {
	r := NewRepo(t)
	sha := r.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "first")
	srv := ServeGitHTTP(t, filepath.Dir(r.Dir), GitHTTPOptions{User: "drover", Password: "s3cret"})
	name := filepath.Base(r.Dir)

	clone := func(url string) (string, error) {
		repo, err := git.PlainClone(t.TempDir(), true, &git.CloneOptions{URL: url, ReferenceName: plumbing.NewBranchReferenceName("main")})
		if err != nil {
			return "", err
		}
		head, err := repo.Head()
		if err != nil {
			return "", err
		}
		return head.Hash().String(), nil
	}
	if got, err := clone(srv.AuthRepoURL(name)); err != nil || got != sha {
		t.Fatalf("clone with credentials: want %s, got %q, %v", sha, got, err)
	}
	if _, err := clone(srv.RepoURL(name)); err == nil || !strings.Contains(err.Error(), "authentication required") {
		t.Errorf("clone without credentials: want an authentication error, got %v", err)
	}
	srv.FailNext(1)
	if _, err := clone(srv.AuthRepoURL(name)); err == nil {
		t.Errorf("clone after FailNext(1): want an error, got nil")
	}
	if got, err := clone(srv.AuthRepoURL(name)); err != nil || got != sha {
		t.Errorf("clone after the injected failure: want %s, got %q, %v", sha, got, err)
	}
}

// TestSilentServer: a connection is accepted and nothing ever comes back.
func TestSilentServer(t *testing.T) {
	s := ServeSilent(t)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatalf("dial silent server: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("read from silent server: want a timeout, got %d bytes, %v", n, err)
	}
	// The accept loop records the connection on its own goroutine.
	for deadline := time.Now().Add(10 * time.Second); s.Accepted() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("Accepted() = %d, want 1", s.Accepted())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnansweredAddr: a connect to the address does not complete.
func TestUnansweredAddr(t *testing.T) {
	addr := UnansweredAddr(t)
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial %s: want a timeout, got %v", addr, err)
	}
}

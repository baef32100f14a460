package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Repo is a git repository with a worktree on branch main, standing in for the fleet
// repository Drover tracks. It is written with go-git, so it needs no git binary and no
// global git configuration.
type Repo struct {
	Dir string
}

// repoAuthor signs every commit, and its fixed time makes the same sequence of commits
// produce the same SHAs on every run.
var repoAuthor = object.Signature{
	Name:  "Drover Test",
	Email: "test@drover.invalid",
	When:  time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
}

// InitRepo creates a repository on branch main in dir, or opens the one already there
// so a re-run demo keeps its history.
func InitRepo(dir string) (*Repo, error) {
	_, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if errors.Is(err, git.ErrRepositoryAlreadyExists) {
		if _, err := git.PlainOpen(dir); err != nil {
			return nil, fmt.Errorf("open git repository %s: %w", dir, err)
		}
		return &Repo{Dir: dir}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("init git repository %s: %w", dir, err)
	}
	return &Repo{Dir: dir}, nil
}

// URL is what Drover's --repo takes for this repository: its path.
func (r *Repo) URL() string { return r.Dir }

// CommitFiles writes files (slash-separated paths relative to the repository; an empty
// content deletes the file), commits them on the current branch and returns the
// commit's full SHA. A commit that changes nothing is still made: a new revision with
// the same content is a legitimate thing for tests to push.
func (r *Repo) CommitFiles(files map[string]string, msg string) (string, error) {
	repo, err := git.PlainOpen(r.Dir)
	if err != nil {
		return "", fmt.Errorf("open git repository %s: %w", r.Dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return "", fmt.Errorf("worktree of %s: %w", r.Dir, err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic order for errors
	for _, name := range names {
		if err := checkRepoPath(name); err != nil {
			return "", fmt.Errorf("commit to %s: %w", r.Dir, err)
		}
		full := filepath.Join(r.Dir, filepath.FromSlash(name))
		if files[name] == "" {
			if err := os.Remove(full); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("commit to %s: delete %s: %w", r.Dir, name, err)
			}
			if _, err := wt.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, index.ErrEntryNotFound) {
				return "", fmt.Errorf("commit to %s: unstage %s: %w", r.Dir, name, err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", fmt.Errorf("commit to %s: %w", r.Dir, err)
		}
		if err := os.WriteFile(full, []byte(files[name]), 0o644); err != nil {
			return "", fmt.Errorf("commit to %s: write %s: %w", r.Dir, name, err)
		}
		if _, err := wt.Add(name); err != nil {
			return "", fmt.Errorf("commit to %s: stage %s: %w", r.Dir, name, err)
		}
	}
	author := repoAuthor
	hash, err := wt.Commit(msg, &git.CommitOptions{Author: &author, Committer: &author, AllowEmptyCommits: true})
	if err != nil {
		return "", fmt.Errorf("commit to %s: %w", r.Dir, err)
	}
	return hash.String(), nil
}

// checkRepoPath rejects paths that would write outside the worktree or into .git.
func checkRepoPath(name string) error {
	clean := filepath.ToSlash(filepath.Clean(filepath.FromSlash(name)))
	switch {
	case name == "" || filepath.IsAbs(name) || strings.HasPrefix(name, "/"):
		return fmt.Errorf("path %q: must be relative", name)
	case clean != name || clean == "." || clean == ".." || strings.HasPrefix(clean, "../"):
		return fmt.Errorf("path %q: must be clean and inside the repository", name)
	case clean == ".git" || strings.HasPrefix(clean, ".git/"):
		return fmt.Errorf("path %q: inside .git", name)
	}
	return nil
}

// NewRepo creates an empty repository on branch main in a temporary directory.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	r, err := InitRepo(t.TempDir())
	if err != nil {
		t.Fatalf("new test repository: %v", err)
	}
	return r
}

// Commit is CommitFiles for a test, failing it on error.
func (r *Repo) Commit(t testing.TB, files map[string]string, msg string) string {
	t.Helper()
	sha, err := r.CommitFiles(files, msg)
	if err != nil {
		t.Fatalf("commit %q: %v", msg, err)
	}
	return sha
}

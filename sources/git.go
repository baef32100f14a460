package sources

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/drover-dev/drover/internal/redact"
)

var (
	// ErrFetch means the repository could not be fetched (unreachable, not a repository,
	// branch missing...). The fleet already running is not affected: retry later.
	ErrFetch = errors.New("git fetch failed")
	// ErrBranchNotFound means the repository has no such branch; it comes with ErrFetch.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrFleetNotFound means the commit has nothing at the fleet path; it comes inside a
	// RevisionError.
	ErrFleetNotFound = errors.New("fleet path not found")
)

const remoteName = "origin"

// GitConfig says which fleet to track.
type GitConfig struct {
	// URL is a remote URL (https://, http://, ssh://, git://, file://) or a local path.
	// An http(s) URL may carry a user and password or token
	// (https://user:token@host/repo.git): they are sent as HTTP basic authentication,
	// kept out of the clone's .git/config, and masked wherever the URL is shown.
	URL string
	// Branch is the branch to track; "main" when empty.
	Branch string
	// Path is the fleet file, or a directory of them, in the repository; "fleet.yaml"
	// when empty. "." is the repository's root directory.
	Path string
	// Dir is a directory the source owns for its clone, reused across restarts. When
	// empty, the clone lives in memory and is fetched in full at each start.
	Dir string
	// Timeout bounds each git operation: a fetch, from dialing the remote to the last
	// byte of the pack, and a read of the fleet at a commit. A remote that accepts
	// the connection and never answers would otherwise block Drover for ever, holding
	// the leader lock. DefaultGitTimeout when zero.
	Timeout time.Duration
}

// Revision is the fleet at one commit.
type Revision struct {
	Commit string // full SHA
	Fleet  *Fleet
}

// RevisionError means the content of a commit is bad (an invalid fleet, a missing fleet
// path): reading the same commit again gives the same error, so only a new commit can
// fix it. It unwraps to the cause, Errors for an invalid fleet.
type RevisionError struct {
	Commit string
	Err    error
}

func (e *RevisionError) Error() string {
	return "commit " + shortSHA(e.Commit) + ": " + e.Err.Error()
}

func (e *RevisionError) Unwrap() error { return e.Err }

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

var fullSHARE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Git tracks one branch of a git repository, pull-based: each Fetch brings the branch
// head, and Fleet reads the fleet at any fetched commit. No authentication is
// configured: public remotes, local repositories, or the credentials an http(s) URL
// carries. Every operation ends within GitConfig.Timeout.
type Git struct {
	cfg    GitConfig
	remote remote
	log    *slog.Logger

	// lock serialises use of the repository: Fetch and Fleet. It is a channel so
	// that waiting for it can be given up (see locked).
	lock chan struct{}
	repo *git.Repository

	// state is apart from lock so Last does not wait for a slow fetch.
	state       sync.Mutex
	lastFetched string
	last        Revision
	hasLast     bool
}

// NewGit checks cfg, fills its defaults, and, when cfg.Dir already holds a clone, checks
// that it is a clone of cfg.URL, so a misconfiguration is found at start.
func NewGit(cfg GitConfig, log *slog.Logger) (*Git, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.URL == "" {
		return nil, errors.New("git source: URL is required")
	}
	ep, err := transport.NewEndpoint(cfg.URL)
	if err != nil {
		return nil, redact.Error(fmt.Errorf("git source: invalid URL %q: %w", redact.URL(cfg.URL), err), splitCredentials(cfg.URL).secrets...)
	}
	if ep.Protocol == "file" && !strings.HasPrefix(cfg.URL, "file://") {
		// A relative path would change meaning with the working directory, and the URL
		// is compared with the one of the clone in Dir.
		abs, err := filepath.Abs(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("git source: resolve path %q: %w", cfg.URL, err)
		}
		cfg.URL = abs
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if err := plumbing.NewBranchReferenceName(cfg.Branch).Validate(); err != nil {
		return nil, fmt.Errorf("git source: invalid branch %q: %w", cfg.Branch, err)
	}
	if cfg.Path == "" {
		cfg.Path = "fleet.yaml"
	}
	cfg.Path = path.Clean(filepath.ToSlash(cfg.Path))
	if path.IsAbs(cfg.Path) || cfg.Path == ".." || strings.HasPrefix(cfg.Path, "../") {
		return nil, fmt.Errorf("git source: path %q must be relative to the repository root", cfg.Path)
	}
	if cfg.Dir != "" {
		if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
			return nil, fmt.Errorf("git source: resolve dir: %w", err)
		}
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultGitTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("git source: timeout %s must be positive", cfg.Timeout)
	}
	r := splitCredentials(cfg.URL)
	g := &Git{cfg: cfg, remote: r, lock: make(chan struct{}, 1), log: log.With("url", r.display, "branch", cfg.Branch)}
	if cfg.Dir != "" {
		repo, err := git.PlainOpen(cfg.Dir)
		switch {
		case err == nil:
			if err := g.checkOrigin(repo); err != nil {
				return nil, err
			}
			g.repo = repo
		case !errors.Is(err, git.ErrRepositoryNotExists):
			return nil, fmt.Errorf("git source: open clone in %s: %w", cfg.Dir, err)
		}
	}
	return g, nil
}

// Config is the configuration in use, defaults filled, with any credential in the URL
// masked: it is for showing, the source keeps the real URL to itself.
func (g *Git) Config() GitConfig {
	cfg := g.cfg
	cfg.URL = g.remote.display
	return cfg
}

// DisplayURL is the repository URL to show in logs and status: as configured, with any
// password or token masked.
func (g *Git) DisplayURL() string { return g.remote.display }

// checkOrigin checks that repo is a clone of the configured remote, adding the remote
// to a clone that has none. A clone made by an older Drover may hold the URL with its
// credentials: it is rewritten without them, as a rotated token would not match it.
func (g *Git) checkOrigin(repo *git.Repository) error {
	remote, err := repo.Remote(remoteName)
	if errors.Is(err, git.ErrRemoteNotFound) {
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{g.remote.url}})
		if err != nil {
			return fmt.Errorf("git source: add remote to clone in %s: %w", g.cfg.Dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("git source: read remote of clone in %s: %w", g.cfg.Dir, err)
	}
	urls := remote.Config().URLs
	if len(urls) == 1 && urls[0] != g.remote.url && splitCredentials(urls[0]).url == g.remote.url {
		return g.setOrigin(repo)
	}
	if len(urls) == 0 || urls[0] != g.remote.url {
		shown := make([]string, len(urls))
		for i, u := range urls {
			shown[i] = redact.URL(u)
		}
		return fmt.Errorf("git source: %s holds a clone of %s, not of %s: use another dir or remove it", g.cfg.Dir, strings.Join(shown, " "), g.remote.display)
	}
	return nil
}

// setOrigin points the clone's remote at the URL without credentials.
func (g *Git) setOrigin(repo *git.Repository) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("git source: read config of clone in %s: %w", g.cfg.Dir, err)
	}
	cfg.Remotes[remoteName].URLs = []string{g.remote.url}
	if err := repo.SetConfig(cfg); err != nil {
		return fmt.Errorf("git source: remove credentials from the config of clone in %s: %w", g.cfg.Dir, err)
	}
	g.log.Info("removed credentials from the git clone's config", "dir", g.cfg.Dir)
	return nil
}

// open returns the repository, creating the local clone on first use. Called with the
// lock held.
func (g *Git) open() (*git.Repository, error) {
	if g.repo != nil {
		return g.repo, nil
	}
	if g.cfg.Dir == "" {
		repo, err := git.Init(memory.NewStorage(), nil)
		if err != nil {
			return nil, fmt.Errorf("create in-memory clone: %w", err)
		}
		if err := g.checkOrigin(repo); err != nil {
			return nil, err
		}
		g.repo = repo
		return repo, nil
	}
	if entries, err := os.ReadDir(g.cfg.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("create clone in %s: directory is not empty and not a git repository", g.cfg.Dir)
	}
	// Initialise beside Dir then rename, so a crash never leaves a half-made clone that
	// the next start would take for a repository.
	parent := filepath.Dir(g.cfg.Dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create clone in %s: %w", g.cfg.Dir, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(g.cfg.Dir)+".init-")
	if err != nil {
		return nil, fmt.Errorf("create clone in %s: %w", g.cfg.Dir, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	repo, err := git.PlainInit(tmp, true)
	if err == nil {
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{g.remote.url}})
	}
	if err == nil {
		err = os.Rename(tmp, g.cfg.Dir)
	}
	if err == nil {
		repo, err = git.PlainOpen(g.cfg.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("create clone in %s: %w", g.cfg.Dir, err)
	}
	g.log.Info("created git clone", "dir", g.cfg.Dir)
	g.repo = repo
	return repo, nil
}

// Fetch brings the tracked branch from the remote and returns the full SHA of its head.
// Failures to reach the remote wrap ErrFetch and name the URL, credentials masked, and
// the branch; a remote that does not answer within the timeout gives ErrTimeout.
func (g *Git) Fetch(ctx context.Context) (string, error) {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	commit, err := locked(ctx, g, g.fetch)
	if err != nil && !errors.Is(err, ErrFetch) && ctx.Err() != nil {
		err = g.fetchError(err)
	}
	return commit, err
}

// fetch is Fetch with the lock held.
func (g *Git) fetch(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", g.fetchError(err)
	}
	repo, err := g.open()
	if err != nil {
		return "", err
	}
	remote, err := repo.Remote(remoteName)
	if err != nil {
		return "", fmt.Errorf("git source: remote of clone: %w", err)
	}
	tracking := plumbing.NewRemoteReferenceName(remoteName, g.cfg.Branch)
	// Forced, so that a force-pushed branch is followed: git is the only input.
	spec := config.RefSpec(fmt.Sprintf("+%s:%s", plumbing.NewBranchReferenceName(g.cfg.Branch), tracking))
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{spec},
		Tags:       git.NoTags,
		Auth:       g.remote.auth,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, git.NoMatchingRefSpecError{}):
		return "", g.fetchError(ErrBranchNotFound)
	default:
		return "", g.fetchError(err)
	}
	ref, err := repo.Reference(tracking, true)
	if err != nil {
		return "", g.fetchError(fmt.Errorf("resolve %s: %w", tracking, err))
	}
	commit := ref.Hash().String()
	g.state.Lock()
	changed := commit != g.lastFetched
	g.lastFetched = commit
	g.state.Unlock()
	if changed {
		g.log.Info("fetched new commit", "revision", commit)
	}
	return commit, nil
}

// fetchError names the remote, credentials masked also in what go-git says.
func (g *Git) fetchError(err error) error {
	return fmt.Errorf("%w: branch %q of %s: %w", ErrFetch, g.cfg.Branch, g.remote.display, redact.Error(err, g.remote.secrets...))
}

// Fleet reads and parses the fleet at commit, a full SHA already fetched. Problems with
// the commit's content come as *RevisionError; errors name files by their repository
// path.
func (g *Git) Fleet(ctx context.Context, commit string) (*Fleet, error) {
	if !fullSHARE.MatchString(commit) {
		return nil, fmt.Errorf("read fleet at commit %q: want a full lowercase SHA-1", commit)
	}
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	fleet, err := locked(ctx, g, func(ctx context.Context) (*Fleet, error) { return g.fleet(ctx, commit) })
	if err != nil && ctx.Err() != nil && !errors.As(err, new(*RevisionError)) {
		return nil, fmt.Errorf("read fleet at commit %s: %w", shortSHA(commit), err)
	}
	return fleet, err
}

// fleet is Fleet with the lock held.
func (g *Git) fleet(ctx context.Context, commit string) (*Fleet, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read fleet at commit %s: %w", shortSHA(commit), err)
	}
	repo, err := g.open()
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("read fleet at commit %s: %w", shortSHA(commit), err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read fleet at commit %s: tree: %w", shortSHA(commit), err)
	}
	files, err := fleetFilesAt(tree, g.cfg.Path)
	if err != nil {
		return nil, &RevisionError{Commit: commit, Err: err}
	}
	fleet, err := parseFiles(files, treeCompanions{tree})
	if err != nil {
		return nil, &RevisionError{Commit: commit, Err: err}
	}
	return fleet, nil
}

// Read fetches the branch and reads the fleet at its head. When the commit is bad the
// returned Revision still names it (without a fleet) beside the *RevisionError.
func (g *Git) Read(ctx context.Context) (Revision, error) {
	commit, err := g.Fetch(ctx)
	if err != nil {
		return Revision{}, err
	}
	fleet, err := g.Fleet(ctx, commit)
	if err != nil {
		return Revision{Commit: commit}, err
	}
	rev := Revision{Commit: commit, Fleet: fleet}
	g.state.Lock()
	g.last, g.hasLast = rev, true
	g.state.Unlock()
	return rev, nil
}

// Last is the last revision Read returned without error, so that a failing fetch or a
// bad commit can be reported against what is known to be good.
func (g *Git) Last() (Revision, bool) {
	g.state.Lock()
	defer g.state.Unlock()
	return g.last, g.hasLast
}

// LastFetched is the branch head at the last successful Fetch, valid fleet or not; ""
// before any.
func (g *Git) LastFetched() string {
	g.state.Lock()
	defer g.state.Unlock()
	return g.lastFetched
}

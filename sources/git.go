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
	// Ref is what to track (ParseRef): "branch:NAME", "tag:NAME", "semver:RANGE" or
	// "commit:SHA". Empty: the branch Branch.
	Ref string
	// Branch is shorthand for Ref "branch:NAME"; "main" when both are empty. Set with
	// a Ref, it must name the same branch.
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
	// Auth is how to authenticate to the remote (SSH keys and host keys, HTTP
	// passwords or tokens from files, a CA bundle); the zero value is none.
	Auth GitAuth
	// Secrets receives every credential the source knows (in the URL, read from
	// Auth's files), so that whoever prints (the logger, /status) masks it; the source
	// masks its own errors with it. A fresh set when nil.
	Secrets *redact.Set
	// VerifySignatures makes the source act only on a head commit (for tag and semver
	// refs, an annotated tag) signed by a key of TrustedKeys or AllowedSigners.
	VerifySignatures bool
	// TrustedKeys is a file holding an armored OpenPGP keyring.
	TrustedKeys string
	// AllowedSigners is an OpenSSH allowed_signers file (ssh-keygen(1)).
	AllowedSigners string
	// Metrics, optional, is told the bytes and the outcome of each exchange with the
	// remote.
	Metrics GitMetrics
}

// Revision is the fleet at one commit.
type Revision struct {
	Commit string // full SHA
	// Ref is what the source tracks ("branch:main", "semver:^1.2"), Tag the tag the
	// commit was reached through, if any.
	Ref   string
	Tag   string
	Fleet *Fleet
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

// Git tracks one ref of a git repository (a branch, a tag, the highest tag in a semver
// range, or a pinned commit), pull-based: each Read asks the remote where the ref
// points, fetches only when it moved, and reads the fleet at that commit; Fleet reads
// it at any other commit, fetching that commit on demand. Every operation ends within
// GitConfig.Timeout. It authenticates as GitConfig.Auth says, or with the credentials an
// http(s) URL carries.
type Git struct {
	cfg    GitConfig
	remote remote
	log    *slog.Logger
	// authPlan and secrets: see callAuth.
	authPlan *authPlan
	secrets  *redact.Set

	// lock serialises use of the repository: Fetch and Fleet. It is a channel so
	// that waiting for it can be given up (see locked).
	lock chan struct{}
	repo *git.Repository

	ref      Ref
	verifier *verifier // nil without VerifySignatures

	// state is apart from lock so Last does not wait for a slow fetch.
	state       sync.Mutex
	lastFetched string
	last        Revision
	hasLast     bool
	// lastRead is the outcome of the last read, kept to answer the next poll when the
	// ref has not moved, without fetching or parsing anything. Used with the lock.
	lastRead *readResult
	// missing are commits the remote did not have (fetchMissing); used with the lock.
	missing map[plumbing.Hash]missingResult
	// fetches counts the packs fetched, stats is the last one's size.
	fetches int
	stats   fetchStats
	dials   int // sessions opened with the remote
	// maxFetch bounds a pack: MaxFetchBytes, lowered by tests.
	maxFetch int64
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
	ref, err := configRef(cfg)
	if err != nil {
		return nil, err
	}
	if ref.Kind == RefBranch {
		cfg.Branch = ref.Name
	}
	cfg.Ref = ref.String()
	var verify *verifier
	if cfg.VerifySignatures {
		if verify, err = newVerifier(cfg.TrustedKeys, cfg.AllowedSigners); err != nil {
			return nil, fmt.Errorf("git source: %w", err)
		}
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
	g := &Git{cfg: cfg, remote: r, lock: make(chan struct{}, 1), ref: ref, verifier: verify, maxFetch: MaxFetchBytes, log: log.With("url", r.display, "ref", ref.String())}
	if err := g.setUpAuth(ep); err != nil {
		return nil, err
	}
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

// Ref is what the source tracks.
func (g *Git) Ref() Ref { return g.ref }

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

// fetchError names the remote, credentials masked also in what go-git says.
func (g *Git) fetchError(err error) error {
	return fmt.Errorf("%w: %s of %s: %w", ErrFetch, g.ref.describe(), g.remote.display, redact.Error(g.authError(err), g.secrets.List()...))
}

// configRef is the ref cfg asks for: Ref, or the branch Branch, "main" by default.
func configRef(cfg GitConfig) (Ref, error) {
	if cfg.Ref == "" {
		branch := cfg.Branch
		if branch == "" {
			branch = "main"
		}
		ref, err := BranchRef(branch)
		if err != nil {
			return Ref{}, fmt.Errorf("git source: invalid branch %q: %w", branch, err)
		}
		return ref, nil
	}
	ref, err := ParseRef(cfg.Ref)
	if err != nil {
		return Ref{}, fmt.Errorf("git source: %w", err)
	}
	if cfg.Branch != "" && (ref.Kind != RefBranch || ref.Name != cfg.Branch) {
		return Ref{}, fmt.Errorf("git source: branch %q and ref %q disagree: give one of them", cfg.Branch, cfg.Ref)
	}
	return ref, nil
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
	// A predecessor's commit (a rollback's target) may predate the shallow clone:
	// fetch it now.
	if err := g.ensureCommit(ctx, repo, plumbing.NewHash(commit)); err != nil {
		return nil, fmt.Errorf("read fleet at commit %s: %w", shortSHA(commit), err)
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

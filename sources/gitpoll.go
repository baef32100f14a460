package sources

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
)

// Local refs of the clone: what was last fetched, offered as haves to the next fetch.
const (
	trackedRef       plumbing.ReferenceName = "refs/drover/tracked"        // the ref's target
	trackedCommitRef plumbing.ReferenceName = "refs/drover/tracked-commit" // its commit
)

// readResult is the outcome of reading one resolution of the ref.
type readResult struct {
	res resolved
	rev Revision
	err error // nil or a *RevisionError: the same target gives the same outcome
}

// Read asks the remote where the ref points and reads the fleet there. When the ref
// has not moved since the last read, that is all it does: no fetch, no parse, the
// last outcome again. When the commit is bad, or refused for its signature, the
// returned Revision still names it (without a fleet) beside the *RevisionError.
// Reads of one commit share its Fleet: callers must not change it.
func (g *Git) Read(ctx context.Context) (Revision, error) {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	rev, err := locked(ctx, g, g.read)
	if err != nil && !errors.Is(err, ErrFetch) && ctx.Err() != nil && !errors.As(err, new(*RevisionError)) {
		err = g.fetchError(err)
	}
	if err != nil {
		return rev, err
	}
	g.state.Lock()
	g.last, g.hasLast = rev, true
	g.state.Unlock()
	return rev, nil
}

// read is Read with the lock held.
func (g *Git) read(ctx context.Context) (Revision, error) {
	if err := ctx.Err(); err != nil {
		return Revision{}, g.fetchError(err)
	}
	repo, err := g.open()
	if err != nil {
		return Revision{}, err
	}
	res, err := g.resolveAndFetch(ctx, repo)
	if err != nil {
		return Revision{}, err
	}
	if prev := g.lastRead; prev != nil && prev.res == res {
		return prev.rev, prev.err
	}
	rev := Revision{Commit: res.commit.String(), Ref: g.ref.String(), Tag: res.tag}
	err = g.verify(repo, res)
	if err == nil {
		rev.Fleet, err = g.fleet(ctx, rev.Commit)
	}
	if err == nil || errors.As(err, new(*RevisionError)) {
		g.lastRead = &readResult{res: res, rev: rev, err: err}
	}
	return rev, err
}

// Fetch brings the commit the ref points at and returns its full SHA. Failures to
// reach the remote wrap ErrFetch and name the URL, credentials masked, and the ref; a
// remote that does not answer within the timeout gives ErrTimeout.
func (g *Git) Fetch(ctx context.Context) (string, error) {
	ctx, cancel := g.withTimeout(ctx)
	defer cancel()
	commit, err := locked(ctx, g, func(ctx context.Context) (string, error) {
		if err := ctx.Err(); err != nil {
			return "", g.fetchError(err)
		}
		repo, err := g.open()
		if err != nil {
			return "", err
		}
		res, err := g.resolveAndFetch(ctx, repo)
		return res.commit.String(), err
	})
	if err != nil && !errors.Is(err, ErrFetch) && ctx.Err() != nil {
		err = g.fetchError(err)
	}
	return commit, err
}

// resolveAndFetch finds where the ref points and makes sure the clone has it. A pinned
// commit already in the clone costs nothing; otherwise the remote is asked for its
// refs, and a pack is fetched only when the ref moved to something the clone lacks.
func (g *Git) resolveAndFetch(ctx context.Context, repo *git.Repository) (_ resolved, err error) {
	if err := ctx.Err(); err != nil {
		return resolved{}, g.fetchError(err)
	}
	st := repo.Storer
	if g.ref.Kind == RefCommit {
		res, _ := g.ref.resolve(advertised{})
		if st.HasEncodedObject(res.target) != nil {
			if err := g.fetchMissing(ctx, st, res.commit); err != nil {
				return resolved{}, err
			}
		}
		g.noteFetched(res)
		return res, nil
	}
	var received int64
	defer func() { g.observeFetch(ctx, received, err) }()
	s, err := g.dial(ctx)
	if err != nil {
		return resolved{}, g.fetchError(err)
	}
	defer s.Close()
	res, err := g.ref.resolve(s.advertised())
	if err != nil {
		return resolved{}, g.fetchError(err)
	}
	if st.HasEncodedObject(res.target) != nil {
		// The first fetch takes the commit's tree alone; later ones what changed
		// since the commits the clone has.
		depth := 0
		if h, err := haves(st, nil); err == nil && len(h) == 0 {
			depth = 1
		}
		stats, err := fetchPack(ctx, s, st, []plumbing.Hash{res.target}, depth, g.maxFetch)
		received = stats.Bytes
		if err != nil {
			return resolved{}, g.fetchError(err)
		}
		g.noteStats(stats)
		if st.HasEncodedObject(res.commit) != nil {
			return resolved{}, g.fetchError(fmt.Errorf("the remote sent no commit %s for %s", res.commit, g.ref))
		}
	}
	if err := setRef(st, trackedRef, res.target); err != nil {
		return resolved{}, err
	}
	if err := setRef(st, trackedCommitRef, res.commit); err != nil {
		return resolved{}, err
	}
	g.noteFetched(res)
	return res, nil
}

// noteFetched records the commit the ref resolved to, logging what moved.
func (g *Git) noteFetched(res resolved) {
	g.state.Lock()
	prevCommit := g.lastFetched
	g.lastFetched = res.commit.String()
	g.state.Unlock()
	var prev resolved
	if g.lastRead != nil {
		prev = g.lastRead.res
	}
	switch {
	case prevCommit == res.commit.String():
	case prev.tag != "" && prev.tag == res.tag:
		g.log.Info("tag moved", "tag", res.tag, "from", prev.commit.String(), "to", res.commit.String())
	case prev.tag != "" && res.tag != "":
		g.log.Info("semver range resolved to another tag", "range", g.ref.Name, "from", prev.tag, "to", res.tag, "revision", res.commit.String())
	default:
		g.log.Info("fetched new commit", "revision", res.commit.String(), "tag", res.tag)
	}
}

func (g *Git) noteStats(st fetchStats) {
	g.state.Lock()
	g.fetches++
	g.stats = st
	g.state.Unlock()
	g.log.Debug("fetched pack", "objects", st.Objects, "bytes", st.Bytes)
}

// ensureCommit fetches commit when the clone lacks it.
func (g *Git) ensureCommit(ctx context.Context, repo *git.Repository, commit plumbing.Hash) error {
	if repo.Storer.HasEncodedObject(commit) == nil {
		return nil
	}
	return g.fetchMissing(ctx, repo.Storer, commit)
}

// fetchMissing fetches one commit the clone lacks: by its SHA (with its tree alone)
// when the remote serves commits that way or a ref points at it, else the whole
// history of the remote's branches and tags, where it must be.
//
// A commit the remote did not have is not asked for again until the ref moves: image
// collection and rollbacks read old commits at every pass, and one force-pushed away
// would otherwise cost a fetch each time.
func (g *Git) fetchMissing(ctx context.Context, st storage.Storer, commit plumbing.Hash) error {
	if err, ok := g.missing[commit]; ok && err.at == g.LastFetched() {
		return err.err
	}
	err := g.fetchCommit(ctx, st, commit)
	var notFound *missingCommit
	if errors.As(err, &notFound) {
		if g.missing == nil {
			g.missing = map[plumbing.Hash]missingResult{}
		}
		g.missing[commit] = missingResult{at: g.LastFetched(), err: err}
	}
	return err
}

// missingResult is a commit the remote lacked when the ref was at commit at.
type missingResult struct {
	at  string
	err error
}

// missingCommit means the remote has no such commit.
type missingCommit struct{ commit plumbing.Hash }

func (e *missingCommit) Error() string {
	return fmt.Sprintf("commit %s is not on the remote's branches and tags", e.commit)
}

func (e *missingCommit) Unwrap() error { return plumbing.ErrObjectNotFound }

func (g *Git) fetchCommit(ctx context.Context, st storage.Storer, commit plumbing.Hash) (err error) {
	var stats fetchStats
	defer func() { g.observeFetch(ctx, stats.Bytes, err) }()
	s, err := g.dial(ctx)
	if err != nil {
		return g.fetchError(err)
	}
	defer s.Close()
	adv := s.advertised()
	tip := false
	for _, h := range adv.refs {
		tip = tip || h == commit
	}
	switch {
	case tip || s.canWantSHA():
		stats, err = fetchPack(ctx, s, st, []plumbing.Hash{commit}, 1, g.maxFetch)
	case g.hasHistory(st, adv):
		// A complete clone of every branch and tag: fetching again brings nothing.
		return g.fetchError(&missingCommit{commit})
	default:
		g.log.Info("the remote does not serve commits by SHA: fetching the history of its branches and tags", "revision", commit.String())
		stats, err = fetchPack(ctx, s, st, adv.heads(), infiniteDepth, g.maxFetch)
	}
	if err != nil {
		if !tip && s.canWantSHA() {
			// "not our ref": the server has no such commit.
			return g.fetchError(fmt.Errorf("%w: %w", &missingCommit{commit}, err))
		}
		return g.fetchError(fmt.Errorf("fetch commit %s: %w", commit, err))
	}
	g.noteStats(stats)
	if st.HasEncodedObject(commit) != nil {
		return g.fetchError(&missingCommit{commit})
	}
	return nil
}

// hasHistory says whether the clone is complete (not shallow) and holds every branch
// and tag the remote advertises.
func (g *Git) hasHistory(st storage.Storer, adv advertised) bool {
	if shallow, err := st.Shallow(); err != nil || len(shallow) > 0 {
		return false
	}
	for _, h := range adv.heads() {
		if st.HasEncodedObject(h) != nil {
			return false
		}
	}
	return true
}

// heads are the objects of the remote's branches and tags.
func (adv advertised) heads() []plumbing.Hash {
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	for name, h := range adv.refs {
		n := plumbing.ReferenceName(name)
		if (n.IsBranch() || n.IsTag()) && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	plumbing.HashesSort(out)
	return out
}

// Last is the last revision Read returned without error, so that a failing fetch or a
// bad commit can be reported against what is known to be good.
func (g *Git) Last() (Revision, bool) {
	g.state.Lock()
	defer g.state.Unlock()
	return g.last, g.hasLast
}

// LastFetched is the commit the ref pointed at on the last successful fetch, valid
// fleet or not; "" before any.
func (g *Git) LastFetched() string {
	g.state.Lock()
	defer g.state.Unlock()
	return g.lastFetched
}

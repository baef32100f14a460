package sources

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrRefNotFound means the remote has nothing the tracked ref names: no such branch or
// tag, or no tag in the semver range. It comes with ErrFetch.
var ErrRefNotFound = errors.New("not found")

// ErrBranchNotFound is ErrRefNotFound for a branch; kept for callers of the branch-only
// source.
var ErrBranchNotFound = ErrRefNotFound

// RefKind is what a Ref tracks.
type RefKind string

// The kinds of ref --ref accepts.
const (
	RefBranch RefKind = "branch" // the head of a branch, followed through force-pushes
	RefTag    RefKind = "tag"    // a tag, followed when it moves
	RefSemver RefKind = "semver" // the highest tag whose name is a version in a range
	RefCommit RefKind = "commit" // one commit, pinned: the remote is asked once
)

// Ref is what a Git source tracks, as "kind:name".
type Ref struct {
	Kind RefKind
	// Name is the branch or tag name, the semver range, or the full commit SHA.
	Name  string
	rng   *semver.Constraints
	value string
}

// ParseRef parses "branch:NAME", "tag:NAME", "semver:RANGE" or "commit:SHA" (a full
// 40-hex SHA, so that what is pinned cannot be ambiguous).
func ParseRef(s string) (Ref, error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return Ref{}, fmt.Errorf("ref %q: want branch:NAME, tag:NAME, semver:RANGE or commit:SHA", s)
	}
	r := Ref{Kind: RefKind(kind), Name: name, value: s}
	switch r.Kind {
	case RefBranch:
		if err := plumbing.NewBranchReferenceName(name).Validate(); err != nil {
			return Ref{}, fmt.Errorf("ref %q: invalid branch name: %w", s, err)
		}
	case RefTag:
		if err := plumbing.NewTagReferenceName(name).Validate(); err != nil {
			return Ref{}, fmt.Errorf("ref %q: invalid tag name: %w", s, err)
		}
	case RefSemver:
		c, err := semver.NewConstraint(name)
		if err != nil {
			return Ref{}, fmt.Errorf("ref %q: invalid semver range: %w", s, err)
		}
		r.rng = c
	case RefCommit:
		if !fullSHARE.MatchString(name) {
			return Ref{}, fmt.Errorf("ref %q: want a full 40-hex lowercase commit SHA", s)
		}
	default:
		return Ref{}, fmt.Errorf("ref %q: unknown kind %q: want branch, tag, semver or commit", s, kind)
	}
	return r, nil
}

// BranchRef is the ref of a branch: what --branch is shorthand for.
func BranchRef(name string) (Ref, error) { return ParseRef(string(RefBranch) + ":" + name) }

func (r Ref) String() string { return r.value }

// Moves says whether a push to the full ref name (refs/heads/main, refs/tags/v1.2.0)
// can change what r resolves to: for a webhook, to tell a push worth a fetch from
// one to ignore. A semver ref is moved by any tag, a pinned commit by nothing.
func (r Ref) Moves(refName string) bool {
	switch r.Kind {
	case RefBranch:
		return refName == plumbing.NewBranchReferenceName(r.Name).String()
	case RefTag:
		return refName == plumbing.NewTagReferenceName(r.Name).String()
	case RefSemver:
		return strings.HasPrefix(refName, "refs/tags/")
	}
	return false
}

// describe names the ref in messages: branch "main".
func (r Ref) describe() string { return fmt.Sprintf("%s %q", r.Kind, r.Name) }

// resolved is where a ref points on the remote right now.
type resolved struct {
	// target is the object the ref names: an annotated tag's tag object, else the
	// commit. It is what is fetched, verified, and compared between polls.
	target plumbing.Hash
	commit plumbing.Hash
	tag    string // the tag's name for tag and semver refs
	// annotated: target is a tag object, peeled to commit.
	annotated bool
}

// advertised is what a remote says it has: ref name to object, and annotated tags
// peeled to their commits.
type advertised struct {
	refs   map[string]plumbing.Hash
	peeled map[string]plumbing.Hash
}

// resolve finds the ref among what the remote advertises. A commit ref needs no
// remote; it resolves to itself.
func (r Ref) resolve(adv advertised) (resolved, error) {
	switch r.Kind {
	case RefCommit:
		h := plumbing.NewHash(r.Name)
		return resolved{target: h, commit: h}, nil
	case RefBranch:
		h, ok := adv.refs[plumbing.NewBranchReferenceName(r.Name).String()]
		if !ok {
			return resolved{}, fmt.Errorf("branch %w", ErrRefNotFound)
		}
		return resolved{target: h, commit: h}, nil
	case RefTag:
		res, ok := adv.tag(r.Name)
		if !ok {
			return resolved{}, fmt.Errorf("tag %w", ErrRefNotFound)
		}
		return res, nil
	case RefSemver:
		name, ok := r.highest(adv)
		if !ok {
			return resolved{}, fmt.Errorf("tag in the range %w", ErrRefNotFound)
		}
		res, _ := adv.tag(name)
		return res, nil
	}
	return resolved{}, fmt.Errorf("ref %s: unknown kind", r)
}

func (adv advertised) tag(name string) (resolved, bool) {
	full := plumbing.NewTagReferenceName(name).String()
	h, ok := adv.refs[full]
	if !ok {
		return resolved{}, false
	}
	res := resolved{target: h, commit: h, tag: name}
	if c, ok := adv.peeled[full]; ok {
		res.commit, res.annotated = c, true
	}
	return res, true
}

// highest is the tag with the highest version in the range. Pre-releases count only
// when the range names one (">= 1.2.0-rc.1"), as the semver library decides. Two tags
// of one version ("v1.2.0" and "1.2.0") are told apart by name, so the choice is
// stable.
func (r Ref) highest(adv advertised) (string, bool) {
	type candidate struct {
		name string
		v    *semver.Version
	}
	var cs []candidate
	for full := range adv.refs {
		name, ok := strings.CutPrefix(full, "refs/tags/")
		if !ok {
			continue
		}
		v, err := semver.NewVersion(name)
		if err != nil || !r.rng.Check(v) {
			continue
		}
		cs = append(cs, candidate{name, v})
	}
	if len(cs) == 0 {
		return "", false
	}
	sort.Slice(cs, func(i, j int) bool {
		if c := cs[i].v.Compare(cs[j].v); c != 0 {
			return c > 0
		}
		return cs[i].name < cs[j].name
	})
	return cs[0].name, true
}

package sources

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage"
)

// The fetch path speaks git's upload-pack protocol through go-git's transports rather
// than through Remote.Fetch, for three things Remote.Fetch does not do:
//   - a poll reads the advertised refs and stops there when nothing moved: one round
//     trip, nothing written;
//   - an incremental fetch into a shallow clone sends the clone's shallow commits
//     without asking to deepen (Remote.Fetch sends them only with a depth), so the
//     server neither resends whole trees nor assumes the clone has history it lacks
//     (a revert to an old blob would otherwise arrive without that blob);
//   - the pack is counted, so the cost of a fetch is known.

// remoteOptions is how Drover reaches the remote: the one place that builds the
// authentication and TLS settings for every list and fetch. It is built at each
// session, so credentials read from files are current.
type remoteOptions struct {
	Auth     transport.AuthMethod
	CABundle []byte
}

// remoteOptions builds the options of the next session with the remote.
func (g *Git) remoteOptions(context.Context) (remoteOptions, error) {
	auth, ca, err := g.callAuth()
	if err != nil {
		return remoteOptions{}, err
	}
	return remoteOptions{Auth: auth, CABundle: ca}, nil
}

// session is one upload-pack conversation: the advertised refs, then at most one pack.
type session struct {
	up  transport.UploadPackSession
	adv *packp.AdvRefs
}

// dial opens a session and reads what the remote advertises.
func (g *Git) dial(ctx context.Context) (*session, error) {
	g.state.Lock()
	g.dials++
	g.state.Unlock()
	opts, err := g.remoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	ep, err := transport.NewEndpoint(g.remote.url)
	if err != nil {
		return nil, err
	}
	ep.CaBundle = opts.CABundle
	c, err := client.NewClient(ep)
	if err != nil {
		return nil, err
	}
	up, err := c.NewUploadPackSession(ep, opts.Auth)
	if err != nil {
		return nil, err
	}
	adv, err := up.AdvertisedReferencesContext(ctx)
	if err != nil {
		up.Close()
		return nil, err
	}
	return &session{up: up, adv: adv}, nil
}

func (s *session) Close() error { return s.up.Close() }

func (s *session) advertised() advertised {
	return advertised{refs: s.adv.References, peeled: s.adv.Peeled}
}

// canWantSHA says whether the remote serves a commit that no ref points at.
func (s *session) canWantSHA() bool {
	caps := s.adv.Capabilities
	return caps.Supports(capability.AllowReachableSHA1InWant) || caps.Supports(capability.AllowTipSHA1InWant)
}

// MaxFetchBytes bounds one pack fetched from the remote: a fleet repository's whole
// history is far smaller, and a hostile or broken server must not fill the disk or
// the memory of an in-memory clone.
const MaxFetchBytes = 1 << 30

// ErrFetchTooLarge means the remote sent a pack larger than the bound.
var ErrFetchTooLarge = errors.New("pack larger than the fetch bound")

// infiniteDepth is what git sends to unshallow a clone.
const infiniteDepth = 0x7fffffff

// fetchStats is the size of what one fetch transferred.
type fetchStats struct {
	Objects int   // objects in the pack
	Bytes   int64 // bytes of the pack
}

// fetchPack asks for wants and stores the pack; the stats count what was received,
// also when it failed part way. depth 0 fetches what the wants need
// beyond what the clone has (its shallow commits included, so nothing behind them is
// assumed); depth 1 fetches the wants' trees alone; infiniteDepth fills in history.
func fetchPack(ctx context.Context, s *session, st storage.Storer, wants []plumbing.Hash, depth int, limit int64) (fetchStats, error) {
	req := packp.NewUploadPackRequestFromCapabilities(s.adv.Capabilities)
	if s.adv.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return fetchStats{}, err
		}
	}
	shallows, err := st.Shallow()
	if err != nil {
		return fetchStats{}, fmt.Errorf("read shallow commits: %w", err)
	}
	req.Shallows = shallows
	if depth > 0 || len(shallows) > 0 {
		if !s.adv.Capabilities.Supports(capability.Shallow) {
			return fetchStats{}, errors.New("the remote does not serve shallow clones")
		}
		if err := req.Capabilities.Set(capability.Shallow); err != nil {
			return fetchStats{}, err
		}
	}
	if depth > 0 {
		req.Depth = packp.DepthCommits(depth)
	}
	req.Wants = wants
	if req.Haves, err = haves(st, wants); err != nil {
		return fetchStats{}, err
	}
	resp, err := s.up.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return fetchStats{}, nil
	}
	if err != nil {
		return fetchStats{}, err
	}
	defer resp.Close()
	if depth > 0 {
		if err := updateShallow(st, shallows, resp.ShallowUpdate); err != nil {
			return fetchStats{}, err
		}
	}
	// The pack is received whole before any of it is stored: an in-memory clone
	// stores objects as they arrive, and a pack cut short (a timeout, the bound) would
	// leave a commit without its tree, taken for fetched at the next poll.
	spool, err := os.CreateTemp("", "drover-pack-")
	if err != nil {
		return fetchStats{}, fmt.Errorf("receive pack: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	// From here on the bytes received are returned with any error: they were
	// transferred, stored or not.
	counted := &countingReader{r: sidebandReader(req.Capabilities, resp), limit: limit}
	if _, err := io.Copy(spool, counted); err != nil {
		return counted.stats(), fmt.Errorf("receive pack: %w", err)
	}
	if counted.n == 0 {
		return fetchStats{}, nil
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return counted.stats(), fmt.Errorf("receive pack: %w", err)
	}
	if err := packfile.UpdateObjectStorage(st, spool); err != nil {
		return counted.stats(), fmt.Errorf("store pack: %w", err)
	}
	return counted.stats(), nil
}

// haves are the objects the clone's refs point at, except the wants: the server
// leaves out everything they reach (bounded by the shallow commits sent beside them).
func haves(st storage.Storer, wants []plumbing.Hash) ([]plumbing.Hash, error) {
	want := map[plumbing.Hash]bool{}
	for _, w := range wants {
		want[w] = true
	}
	iter, err := st.IterReferences()
	if err != nil {
		return nil, fmt.Errorf("list local refs: %w", err)
	}
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		h := ref.Hash()
		if ref.Type() != plumbing.HashReference || want[h] || seen[h] {
			return nil
		}
		seen[h] = true
		if st.HasEncodedObject(h) == nil {
			out = append(out, h)
		}
		return nil
	})
	return out, err
}

// updateShallow records the server's new shallow boundary.
func updateShallow(st storage.Storer, before []plumbing.Hash, upd packp.ShallowUpdate) error {
	set := map[plumbing.Hash]bool{}
	for _, h := range before {
		set[h] = true
	}
	for _, h := range upd.Shallows {
		set[h] = true
	}
	for _, h := range upd.Unshallows {
		delete(set, h)
	}
	out := make([]plumbing.Hash, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	plumbing.HashesSort(out)
	if err := st.SetShallow(out); err != nil {
		return fmt.Errorf("write shallow commits: %w", err)
	}
	return nil
}

func sidebandReader(caps *capability.List, r io.Reader) io.Reader {
	switch {
	case caps.Supports(capability.Sideband64k):
		return sideband.NewDemuxer(sideband.Sideband64k, r)
	case caps.Supports(capability.Sideband):
		return sideband.NewDemuxer(sideband.Sideband, r)
	}
	return r
}

// countingReader counts a pack's bytes and keeps its 12-byte header, which holds the
// object count.
type countingReader struct {
	r      io.Reader
	n      int64
	limit  int64
	header [12]byte
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, fmt.Errorf("%w: more than %d bytes", ErrFetchTooLarge, c.limit)
	}
	if int64(len(p)) > c.limit-c.n+1 {
		p = p[:c.limit-c.n+1]
	}
	n, err := c.r.Read(p)
	if c.n < int64(len(c.header)) {
		copy(c.header[c.n:], p[:n])
	}
	c.n += int64(n)
	return n, err
}

func (c *countingReader) stats() fetchStats {
	st := fetchStats{Bytes: c.n}
	if c.n >= int64(len(c.header)) && string(c.header[:4]) == "PACK" {
		st.Objects = int(binary.BigEndian.Uint32(c.header[8:12]))
	}
	return st
}

// setRef points name at h in the clone, so the next fetch offers h as a have. A ref
// already there is not written again: a poll with nothing new writes nothing.
func setRef(st storer.ReferenceStorer, name plumbing.ReferenceName, h plumbing.Hash) error {
	if ref, err := st.Reference(name); err == nil && ref.Hash() == h {
		return nil
	}
	if err := st.SetReference(plumbing.NewHashReference(name, h)); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// Package webhook receives git push notifications (GitHub, Gitea/Forgejo/Gogs, GitLab)
// and turns a verified push to the tracked ref into an immediate fetch and pass. It
// knows nothing of the HTTP server it is mounted on, nor of git: it verifies, filters
// and coalesces, and calls the Trigger it is given. Polling stays the fallback, so a
// lost webhook only costs time.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// MinSecretLen is the shortest secret accepted: an HMAC key shorter than this is
// guessable offline from one captured request.
const MinSecretLen = 16

// DefaultMaxBody bounds a push body. GitHub caps its payloads at 25 MB, but a push with
// a huge commit list is not needed: only the ref is read, and a body over the bound is
// refused before it is verified.
const DefaultMaxBody = 1 << 20

// Config configures a Handler.
type Config struct {
	// Secret is the shared secret configured on the git host's webhook.
	Secret []byte
	// Tracks reports whether a pushed ref ("refs/heads/main", "refs/tags/v1.2.0") is one
	// Drover follows; pushes to other refs are acknowledged and ignored.
	Tracks func(ref string) bool
	// Trigger fetches and runs a pass; it returns once a source read that began after
	// the call is done. Calls are serialised: a burst of pushes costs the call under way
	// plus at most one more.
	Trigger func(ctx context.Context) error
	// MaxBody bounds the request body; default DefaultMaxBody.
	MaxBody int64
	Log     *slog.Logger
}

// Handler is the /hooks/git endpoint. Run must be running for pushes to trigger.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	pending chan struct{}

	mu    sync.Mutex
	stats Stats
}

// Stats counts what the handler did, for tests and metrics.
type Stats struct {
	Accepted  int // verified pushes to a tracked ref
	Ignored   int // verified pushes to another ref, or events that are not pushes
	Refused   int // bad or missing signature, oversized or malformed body
	Triggered int // Trigger calls made
}

// New checks the configuration and returns a handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("webhook secret: %d bytes, want at least %d", len(cfg.Secret), MinSecretLen)
	}
	if cfg.Tracks == nil || cfg.Trigger == nil {
		return nil, errors.New("webhook: Tracks and Trigger are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, log: log, pending: make(chan struct{}, 1)}, nil
}

// Stats returns a copy of the counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

func (h *Handler) count(f func(*Stats)) {
	h.mu.Lock()
	f(&h.stats)
	h.mu.Unlock()
}

// Run calls Trigger for pushes until ctx ends. One slot of pending work coalesces a
// burst: pushes that arrive while a Trigger runs fill the slot once, and the rest find
// it full and are already covered by the call that will follow.
func (h *Handler) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.pending:
		}
		h.count(func(s *Stats) { s.Triggered++ })
		start := time.Now()
		err := h.cfg.Trigger(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			h.log.Warn("webhook: fetch and pass failed; polling continues", "err", err)
		case err == nil:
			h.log.Debug("webhook: fetch done, pass started", "took", time.Since(start))
		}
	}
}

// ServeHTTP verifies a push and, for a tracked ref, queues a fetch: 202 either way, 401
// when the signature is missing or wrong, 413 when the body is too large.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "webhook: POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, h.cfg.MaxBody))
	if err != nil {
		h.count(func(s *Stats) { s.Refused++ })
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("webhook: body over %d bytes", h.cfg.MaxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "webhook: reading body failed", http.StatusBadRequest)
		return
	}
	p, err := verify(req.Header, body, h.cfg.Secret)
	if err != nil {
		h.count(func(s *Stats) { s.Refused++ })
		h.log.Warn("webhook: refused", "remote", req.RemoteAddr, "err", err)
		w.Header().Set("WWW-Authenticate", `HMAC realm="drover"`)
		http.Error(w, "webhook: "+err.Error(), http.StatusUnauthorized)
		return
	}
	if !p.push {
		h.count(func(s *Stats) { s.Ignored++ })
		reply(w, http.StatusAccepted, "ignored", "not a push event")
		return
	}
	ref, err := pushedRef(body)
	if err != nil {
		h.count(func(s *Stats) { s.Refused++ })
		http.Error(w, "webhook: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !h.cfg.Tracks(ref) {
		h.count(func(s *Stats) { s.Ignored++ })
		h.log.Debug("webhook: push to an untracked ref ignored", "provider", p.name, "ref", ref)
		reply(w, http.StatusAccepted, "ignored", "ref "+ref+" is not tracked")
		return
	}
	h.count(func(s *Stats) { s.Accepted++ })
	select {
	case h.pending <- struct{}{}:
		h.log.Info("webhook: push received, fetching", "provider", p.name, "ref", ref)
	default:
		h.log.Debug("webhook: push coalesced with a fetch already queued", "provider", p.name, "ref", ref)
	}
	reply(w, http.StatusAccepted, "accepted", "fetch queued for "+ref)
}

func reply(w http.ResponseWriter, code int, status, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"status": status, "detail": detail})
}

// provider is what verify learned of a request: who sent it and whether it is a push.
type provider struct {
	name string
	push bool
}

// verify authenticates a request by the header its provider signs with. A request with
// headers of several providers is judged by the first in this order, and must verify
// there: a valid GitLab token cannot rescue a bad GitHub signature.
func verify(hdr http.Header, body, secret []byte) (provider, error) {
	switch {
	case hdr.Get("X-Hub-Signature-256") != "":
		sig, ok := strings.CutPrefix(hdr.Get("X-Hub-Signature-256"), "sha256=")
		if !ok || !hmacOK(sig, body, secret) {
			return provider{}, errors.New("X-Hub-Signature-256 does not match the body and secret")
		}
		return provider{"github", hdr.Get("X-GitHub-Event") == "push"}, nil
	case hdr.Get("X-Gitea-Signature") != "", hdr.Get("X-Forgejo-Signature") != "", hdr.Get("X-Gogs-Signature") != "":
		name, sig := "gitea", hdr.Get("X-Gitea-Signature")
		if sig == "" {
			name, sig = "forgejo", hdr.Get("X-Forgejo-Signature")
		}
		if sig == "" {
			name, sig = "gogs", hdr.Get("X-Gogs-Signature")
		}
		if !hmacOK(sig, body, secret) {
			return provider{}, fmt.Errorf("%s signature does not match the body and secret", name)
		}
		event := hdr.Get("X-Gitea-Event") + hdr.Get("X-Forgejo-Event") + hdr.Get("X-Gogs-Event")
		return provider{name, strings.HasPrefix(event, "push")}, nil
	case hdr.Get("X-Gitlab-Token") != "":
		// GitLab sends the secret itself, not a signature: compare in constant time.
		if subtle.ConstantTimeCompare([]byte(hdr.Get("X-Gitlab-Token")), secret) != 1 {
			return provider{}, errors.New("X-Gitlab-Token does not match the secret")
		}
		event := hdr.Get("X-Gitlab-Event")
		return provider{"gitlab", event == "Push Hook" || event == "Tag Push Hook"}, nil
	}
	return provider{}, errors.New("no signature: want X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea, Forgejo) or X-Gitlab-Token (GitLab)")
}

// hmacOK compares a hex HMAC-SHA256 of body with sig in constant time.
func hmacOK(sig string, body, secret []byte) bool {
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// pushedRef reads the ref of a push: the three providers all send it as "ref".
func pushedRef(body []byte) (string, error) {
	var p struct {
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return "", fmt.Errorf("push body is not JSON: %w", err)
	}
	if !strings.HasPrefix(p.Ref, "refs/") || len(p.Ref) > 1024 {
		return "", fmt.Errorf("push body has no valid ref (got %.64q)", p.Ref)
	}
	return p.Ref, nil
}

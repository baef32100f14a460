package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef-webhook-secret")

func sign(body string, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

func tracksMain(ref string) bool { return ref == "refs/heads/main" }

func newHandler(t *testing.T, trigger func(context.Context) error) *Handler {
	t.Helper()
	h, err := New(Config{Secret: secret, Tracks: tracksMain, Trigger: trigger})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const pushMain = `{"ref":"refs/heads/main","after":"0123"}`

func TestNewRefusesShortSecret(t *testing.T) {
	_, err := New(Config{Secret: []byte("short"), Tracks: tracksMain, Trigger: func(context.Context) error { return nil }})
	if err == nil || !strings.Contains(err.Error(), "want at least 16") {
		t.Fatalf("want a short-secret error, got %v", err)
	}
}

func TestVerify(t *testing.T) {
	other := `{"ref":"refs/heads/main","after":"9999"}`
	tests := []struct {
		name     string
		body     string
		headers  map[string]string
		wantCode int
		wantBody string
	}{
		{"github good", pushMain, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(pushMain, secret), "X-GitHub-Event": "push"}, 202, "accepted"},
		{"github bad", pushMain, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(pushMain, []byte("another-secret-of-16+")), "X-GitHub-Event": "push"}, 401, "does not match"},
		{"github no prefix", pushMain, map[string]string{"X-Hub-Signature-256": sign(pushMain, secret), "X-GitHub-Event": "push"}, 401, "does not match"},
		{"github replayed signature of another body", pushMain, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(other, secret), "X-GitHub-Event": "push"}, 401, "does not match"},
		{"github ping", `{"zen":"hi"}`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(`{"zen":"hi"}`, secret), "X-GitHub-Event": "ping"}, 202, "not a push"},
		{"gitea good", pushMain, map[string]string{"X-Gitea-Signature": sign(pushMain, secret), "X-Gitea-Event": "push"}, 202, "accepted"},
		{"gitea bad", pushMain, map[string]string{"X-Gitea-Signature": "00" + sign(pushMain, secret)[2:], "X-Gitea-Event": "push"}, 401, "gitea signature"},
		{"gitea not hex", pushMain, map[string]string{"X-Gitea-Signature": "zz", "X-Gitea-Event": "push"}, 401, "gitea signature"},
		{"forgejo good", pushMain, map[string]string{"X-Forgejo-Signature": sign(pushMain, secret), "X-Forgejo-Event": "push"}, 202, "accepted"},
		{"gitlab good", pushMain, map[string]string{"X-Gitlab-Token": string(secret), "X-Gitlab-Event": "Push Hook"}, 202, "accepted"},
		{"gitlab bad", pushMain, map[string]string{"X-Gitlab-Token": "not-the-secret-at-all", "X-Gitlab-Event": "Push Hook"}, 401, "X-Gitlab-Token"},
		{"missing", pushMain, map[string]string{"X-GitHub-Event": "push"}, 401, "no signature"},
		{"other ref", `{"ref":"refs/heads/dev"}`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(`{"ref":"refs/heads/dev"}`, secret), "X-GitHub-Event": "push"}, 202, "not tracked"},
		{"bad json", `nope`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(`nope`, secret), "X-GitHub-Event": "push"}, 400, "not JSON"},
		{"no ref", `{}`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign(`{}`, secret), "X-GitHub-Event": "push"}, 400, "no valid ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			h := newHandler(t, func(context.Context) error { calls.Add(1); return nil })
			req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("want %d containing %q, got %d %q", tt.wantCode, tt.wantBody, rec.Code, rec.Body.String())
			}
			queued := len(h.pending) == 1
			if want := tt.wantBody == "accepted"; queued != want {
				t.Errorf("fetch queued: want %v, got %v", want, queued)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	h := newHandler(t, func(context.Context) error { return nil })
	body := `{"ref":"refs/heads/main","pad":"` + strings.Repeat("x", DefaultMaxBody) + `"}`
	req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign(body, secret))
	req.Header.Set("X-GitHub-Event", "push")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || len(h.pending) != 0 {
		t.Fatalf("want 413 and nothing queued, got %d (queued %d)", rec.Code, len(h.pending))
	}
}

func TestGetRefused(t *testing.T) {
	h := newHandler(t, func(context.Context) error { return nil })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hooks/git", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("want 405, got %d", rec.Code)
	}
}

// A burst of pushes while a fetch runs costs that fetch and one more, never one each.
func TestBurstCoalesces(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	var calls, inFlight, maxInFlight atomic.Int32
	h := newHandler(t, func(ctx context.Context) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n > maxInFlight.Load() {
			maxInFlight.Store(n)
		}
		calls.Add(1)
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); h.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	push := func() {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(pushMain))
		req.Header.Set("X-Gitea-Signature", sign(pushMain, secret))
		req.Header.Set("X-Gitea-Event", "push")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Errorf("push: want 202, got %d", resp.StatusCode)
		}
	}
	push()
	<-started // the first fetch runs and blocks
	var pushes sync.WaitGroup
	for range 20 {
		pushes.Add(1)
		go func() { defer pushes.Done(); push() }()
	}
	pushes.Wait()
	close(release)
	<-started // the one coalesced follow-up
	deadline := time.After(2 * time.Second)
	// No third call may come: wait until the handler is idle with nothing pending.
	for len(h.pending) != 0 || inFlight.Load() != 0 {
		select {
		case <-deadline:
			t.Fatal("handler did not become idle")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("21 pushes: want 2 fetches (the one under way + one), got %d", got)
	}
	if got := maxInFlight.Load(); got != 1 {
		t.Errorf("want fetches serialised, got %d at once", got)
	}
	if st := h.Stats(); st.Accepted != 21 || st.Triggered != 2 {
		t.Errorf("stats: want 21 accepted, 2 triggered, got %+v", st)
	}
}

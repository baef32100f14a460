package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// gitGate is a proxy in front of a git server that counts what Drover asks for (ref
// listings, pack requests) and can hold pack requests until released, so a test knows
// a fetch is under way while it sends more pushes.
type gitGate struct {
	URL      string
	listings atomic.Int64 // GET …/info/refs
	wants    atomic.Int64 // POST …/git-upload-pack: a fetch that asks for objects

	mu   sync.Mutex
	held chan struct{} // non-nil while pack requests are held; closed to release
	hit  chan struct{} // gets a value when a held request arrives
}

func newGitGate(t *testing.T, upstream string) *gitGate {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	g := &gitGate{hit: make(chan struct{}, 1)}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
			g.listings.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			g.wants.Add(1)
			g.mu.Lock()
			held := g.held
			g.mu.Unlock()
			if held != nil {
				select {
				case g.hit <- struct{}{}:
				default:
				}
				select {
				case <-held:
				case <-r.Context().Done():
					return
				}
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// hold makes pack requests wait until the returned release is called.
func (g *gitGate) hold() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	held := make(chan struct{})
	g.held = held
	return func() {
		g.mu.Lock()
		g.held = nil
		g.mu.Unlock()
		close(held)
	}
}

// counts are the gate's and the server's counters at one moment.
type gitCounts struct{ listings, wants, packs int }

func (c gitCounts) String() string {
	return fmt.Sprintf("%d ref listings, %d pack requests, %d packs sent", c.listings, c.wants, c.packs)
}

// hookDelivery is one webhook POST as a provider would send it.
type hookDelivery struct {
	header http.Header
	body   []byte
}

func pushBody(ref, after string) []byte {
	return fmt.Appendf(nil, `{"ref":%q,"before":"0000000000000000000000000000000000000000","after":%q,"repository":{"full_name":"ops/fleet"}}`, ref, after)
}

func hexHMAC(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func githubPush(secret string, body []byte) hookDelivery {
	h := http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"}, "X-Github-Delivery": {"72d3162e-cc78-11e3-81ab-4c9367dc0958"}}
	h.Set("X-Hub-Signature-256", "sha256="+hexHMAC(secret, body))
	return hookDelivery{h, body}
}

func giteaPush(secret string, body []byte) hookDelivery {
	h := http.Header{"Content-Type": {"application/json"}, "X-Gitea-Event": {"push"}}
	h.Set("X-Gitea-Signature", hexHMAC(secret, body))
	return hookDelivery{h, body}
}

func gitlabPush(token string, body []byte) hookDelivery {
	h := http.Header{"Content-Type": {"application/json"}, "X-Gitlab-Event": {"Push Hook"}}
	h.Set("X-Gitlab-Token", token)
	return hookDelivery{h, body}
}

// post delivers d to url and returns the status code and body.
func (d hookDelivery) post(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.Header = d.header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestWebhookEndToEnd runs the real binary with --interval 1h, so that only the
// webhook makes it read the repository, against git http-backend behind a counting
// proxy, and delivers pushes as GitHub, Gitea and GitLab do: valid ones to the tracked
// branch are tracked within seconds, bad signatures and other branches fetch nothing,
// a burst of 20 costs the fetch under way and one ref listing, and the secret shows
// nowhere.
func TestWebhookEndToEnd(t *testing.T) {
	const secret = "hook-secret-5e4d3c2b1a09"
	consul := testenv.Consul(t)
	root := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(root, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	fleetN := 0
	commit := func() string {
		fleetN++
		return repo.Commit(t, map[string]string{"fleet.yaml": fmt.Sprintf("services: []\n# push %d\n", fleetN)}, fmt.Sprintf("push %d", fleetN))
	}
	commit()
	srv := testenv.ServeGitHTTP(t, root, testenv.GitHTTPOptions{})
	gate := newGitGate(t, srv.URL)
	counts := func() gitCounts {
		return gitCounts{int(gate.listings.Load()), int(gate.wants.Load()), srv.Fetches()}
	}
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildCrashDrover(t)
	p := startLeaderProc(t, bin, "drover", "run", "--repo", gate.URL+"/fleet", "--state-dir", testenv.StateDir(t), "--consul", consul.Addr,
		"--driver", "qemu", "--interval", "1h", "--log-format", "json", "--log-level", "debug",
		"--listen", "127.0.0.1:0", "--webhook-secret-file", secretFile)
	p.waitLog(t, `"msg":"tracking revision"`, time.Minute)
	m := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+)/status"`).FindStringSubmatch(p.log())
	if m == nil {
		t.Fatalf("no status endpoint logged:\n%s", p.log())
	}
	base := m[1]
	hook := base + "/hooks/git"
	tracked := func(sha string) string { return `"msg":"tracking revision","revision":"` + sha + `"` }
	// passesStarted counts the webhook's completed triggers: each returns once a round
	// begun after it has read the repository and started its pass.
	passesStarted := func() int { return strings.Count(p.log(), `"msg":"webhook: fetch done, pass started"`) }
	waitPasses := func(t *testing.T, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for passesStarted() < n {
			if time.Now().After(deadline) {
				t.Fatalf("webhook triggers done: %d, want %d within 30s", passesStarted(), n)
			}
			time.Sleep(10 * time.Millisecond) // polling the log, with the deadline above
		}
	}

	// Extra rounds may come on their own: a health change in Consul (the leader's own
	// check turning passing, at start) wakes the runner. They list refs and fetch only
	// what is new, so the tests count pack requests and packs, which only a moved
	// branch costs, and the webhook's own log lines.
	webhookLines := func() (fetching, coalesced, triggered int) {
		l := p.log()
		return strings.Count(l, `"msg":"webhook: push received, fetching"`),
			strings.Count(l, `"msg":"webhook: push coalesced with a fetch already queued"`), passesStarted()
	}
	waitPacks := func(t *testing.T, n int) {
		t.Helper()
		// The server notes a pack once it has sent it, maybe after Drover has read it.
		deadline := time.Now().Add(10 * time.Second)
		for srv.Fetches() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling the server's count, with the deadline above
		}
	}

	waitPacks(t, 1) // the clone's

	t.Run("refused", func(t *testing.T) {
		// The bodies name a commit not pushed yet: a round that comes on its own finds
		// nothing to fetch, and one a refused delivery started would show in the log.
		sha := strings.Repeat("ab", 20)
		before := counts()
		f0, c0, n0 := webhookLines()
		good := pushBody("refs/heads/main", sha)
		other := pushBody("refs/heads/other", sha)
		badGitHub := githubPush("not-the-secret-000000", good)
		replayed := githubPush(secret, other) // a signature captured from another delivery
		replayed.body = good
		replayedGitea := giteaPush(secret, other)
		replayedGitea.body = good
		unsigned := githubPush(secret, good)
		unsigned.header.Del("X-Hub-Signature-256")
		for _, tt := range []struct {
			name string
			d    hookDelivery
			want int
		}{
			{"GitHub, wrong secret", badGitHub, http.StatusUnauthorized},
			{"GitHub, no signature", unsigned, http.StatusUnauthorized},
			{"GitHub, signature of another body", replayed, http.StatusUnauthorized},
			{"Gitea, wrong secret", giteaPush("not-the-secret-000000", good), http.StatusUnauthorized},
			{"Gitea, signature of another body", replayedGitea, http.StatusUnauthorized},
			{"GitLab, wrong token", gitlabPush("not-the-secret-000000", good), http.StatusUnauthorized},
			{"GitLab, token as a prefix", gitlabPush(secret[:len(secret)-1], good), http.StatusUnauthorized},
			{"body over 1 MiB", githubPush(secret, bytes.Repeat([]byte(" "), 1<<20+1)), http.StatusRequestEntityTooLarge},
		} {
			code, body := tt.d.post(t, hook)
			if code != tt.want {
				t.Errorf("%s: got %d %s, want %d", tt.name, code, body, tt.want)
			}
		}
		if got := counts(); got.wants != before.wants || got.packs != before.packs {
			t.Errorf("after refused deliveries: got %s, want %s (nothing fetched)", got, before)
		}
		if f, c, n := webhookLines(); f != f0 || c != c0 || n != n0 {
			t.Errorf("after refused deliveries: %d queued, %d coalesced, %d triggered, want none", f-f0, c-c0, n-n0)
		}
	})

	t.Run("other branch", func(t *testing.T) {
		testenv.Git(t, repo.Dir, nil, "checkout", "-q", "-b", "other")
		sha := repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n# other\n"}, "on other")
		testenv.Git(t, repo.Dir, nil, "checkout", "-q", "main")
		before := counts()
		f0, c0, n0 := webhookLines()
		code, body := githubPush(secret, pushBody("refs/heads/other", sha)).post(t, hook)
		if code != http.StatusAccepted || !strings.Contains(body, `"ignored"`) {
			t.Errorf("push to another branch: got %d %s, want 202 ignored", code, body)
		}
		if got := counts(); got.wants != before.wants || got.packs != before.packs {
			t.Errorf("after a push to another branch: got %s, want %s (nothing fetched)", got, before)
		}
		if f, c, n := webhookLines(); f != f0 || c != c0 || n != n0 {
			t.Errorf("after a push to another branch: %d queued, %d coalesced, %d triggered, want none", f-f0, c-c0, n-n0)
		}
	})

	// One push costs one round: a ref listing to see the branch moved, then the fetch.
	var perFetch gitCounts
	t.Run("GitHub push", func(t *testing.T) {
		sha := commit()
		before, n := counts(), passesStarted()
		start := time.Now()
		code, body := githubPush(secret, pushBody("refs/heads/main", sha)).post(t, hook)
		if code != http.StatusAccepted || !strings.Contains(body, `"accepted"`) {
			t.Fatalf("push: got %d %s, want 202 accepted", code, body)
		}
		p.waitLog(t, tracked(sha), 10*time.Second)
		t.Logf("push → tracking %s: %s", sha[:12], time.Since(start).Round(time.Millisecond))
		waitPasses(t, n+1)
		waitPacks(t, before.packs+1)
		got := counts()
		perFetch = gitCounts{got.listings - before.listings, got.wants - before.wants, got.packs - before.packs}
		if perFetch.packs != 1 || perFetch.wants != 1 {
			t.Errorf("one push: %s, want 1 pack request and 1 pack", perFetch)
		}
		t.Logf("one push: %s", perFetch)
	})

	t.Run("burst of 20", func(t *testing.T) {
		if perFetch.packs != 1 {
			t.Skip("the single push did not work")
		}
		sha := commit()
		before := counts()
		f0, c0, n0 := webhookLines()
		release := gate.hold()
		defer func() {
			if release != nil {
				release()
			}
		}()
		d := githubPush(secret, pushBody("refs/heads/main", sha))
		if code, body := d.post(t, hook); code != http.StatusAccepted {
			t.Fatalf("first push: got %d %s, want 202", code, body)
		}
		select {
		case <-gate.hit:
		case <-time.After(30 * time.Second):
			t.Fatalf("no fetch within 30s of the first push: %s", counts())
		}
		// The fetch is under way, held at the server; 19 more pushes arrive at once.
		var wg sync.WaitGroup
		codes := make([]int, 19)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _ = d.post(t, hook)
			}()
		}
		wg.Wait()
		for i, c := range codes {
			if c != http.StatusAccepted {
				t.Errorf("push %d of the burst: got %d, want 202", i+2, c)
			}
		}
		release()
		release = nil
		p.waitLog(t, tracked(sha), 30*time.Second)
		// The trigger under way, then exactly one more for the 19 that came during it.
		waitPasses(t, n0+2)
		waitPacks(t, before.packs+1)
		got := counts()
		if got.wants != before.wants+1 || got.packs != before.packs+1 {
			t.Errorf("after a burst of 20: got %s, want %d pack request and %d pack more than %s", got, 1, 1, before)
		}
		t.Logf("burst of 20: %d ref listings, %d pack requests, %d packs", got.listings-before.listings, got.wants-before.wants, got.packs-before.packs)
		f, c, n := webhookLines()
		if f-f0 != 2 || c-c0 != 18 || n-n0 != 2 {
			t.Errorf("pushes: %d queued a fetch, %d coalesced, %d triggers; want 2 (the first, and one while it ran), 18, 2", f-f0, c-c0, n-n0)
		}
	})

	for _, tt := range []struct {
		name    string
		deliver func(body []byte) hookDelivery
	}{
		{"GitLab push", func(b []byte) hookDelivery { return gitlabPush(secret, b) }},
		{"Gitea push", func(b []byte) hookDelivery { return giteaPush(secret, b) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sha := commit()
			before := counts()
			start := time.Now()
			code, body := tt.deliver(pushBody("refs/heads/main", sha)).post(t, hook)
			if code != http.StatusAccepted || !strings.Contains(body, `"accepted"`) {
				t.Fatalf("push: got %d %s, want 202 accepted", code, body)
			}
			p.waitLog(t, tracked(sha), 10*time.Second)
			t.Logf("push → tracking %s: %s", sha[:12], time.Since(start).Round(time.Millisecond))
			waitPacks(t, before.packs+1)
			if got := counts(); got.packs != before.packs+1 {
				t.Errorf("packs sent: got %d, want %d", got.packs, before.packs+1)
			}
		})
	}

	t.Run("secret never shown", func(t *testing.T) {
		seen := map[string]string{}
		for _, path := range []string{"/status", "/api/v1/status", "/metrics", "/"} {
			code, body := get(t, base+path, "")
			if code != http.StatusOK {
				t.Errorf("GET %s: %d, want 200", path, code)
			}
			seen[path] = body
		}
		p.stop(t)
		seen["the log"] = p.log()
		for where, text := range seen {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the webhook secret:\n%s", where, text)
			}
		}
	})
}

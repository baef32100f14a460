package server

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const testToken = "s3cret-token-9f8e7d"

func tokenFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) {
		c.Token = testToken
		c.Webhook = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "hook")
		})
	})
}

// loginCookie logs in through the form and returns the cookie header it set.
func loginCookie(t *testing.T, f *fixture) string {
	t.Helper()
	w := f.do("POST", "/login", "token="+url.QueryEscape(testToken), "Content-Type", "application/x-www-form-urlencoded")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("POST /login with the token: %d %s, want 303", w.Code, w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || c[0].Name != cookieName || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie: got %+v, want one HttpOnly SameSite=Strict %s", c, cookieName)
	}
	if strings.Contains(c[0].Value, testToken) {
		t.Fatalf("login cookie %q carries the token itself", c[0].Value)
	}
	return c[0].Name + "=" + c[0].Value
}

// TestAuth: with a token, everything but /healthz, /hooks/git, /login and /static/
// wants it; the login cookie reads and never orders.
func TestAuth(t *testing.T) {
	f := tokenFixture(t)
	cookie := loginCookie(t, f)
	bearer := "Bearer " + testToken
	tests := []struct {
		method, path string
		hdr          []string
		want         int
	}{
		{"GET", "/healthz", nil, 200},
		{"POST", "/hooks/git", nil, 202},
		{"GET", "/login", nil, 200},
		{"GET", "/static/app.js", nil, 200},

		{"GET", "/status", nil, 401},
		{"GET", "/status", []string{"Authorization", "Bearer wrong"}, 401},
		{"GET", "/status", []string{"Authorization", bearer + "-and-more"}, 401},
		{"GET", "/status", []string{"Authorization", "Basic czNjcmV0"}, 401},
		{"GET", "/status", []string{"Authorization", bearer}, 200},
		{"GET", "/api/v1/status", nil, 401},
		{"GET", "/api/v1/status", []string{"Authorization", bearer}, 200},
		{"GET", "/api/v1/history", nil, 401},
		{"GET", "/metrics", nil, 401},
		{"GET", "/metrics", []string{"Authorization", bearer}, 200},
		{"GET", "/", nil, 303},
		{"GET", "/services/web", nil, 303},
		{"POST", "/api/v1/reconcile", nil, 401},
		{"POST", "/api/v1/services/web/resume", nil, 401},
		{"POST", "/api/v1/services/web/resume", []string{"Authorization", bearer}, 200},
		{"GET", "/api/v1/status", []string{"Cookie", cookieName + "=forged"}, 401},

		{"GET", "/", []string{"Cookie", cookie}, 200},
		{"GET", "/services/web", []string{"Cookie", cookie}, 200},
		{"GET", "/api/v1/status", []string{"Cookie", cookie}, 200},
		{"GET", "/metrics", []string{"Cookie", cookie}, 200},
		{"POST", "/api/v1/reconcile", []string{"Cookie", cookie}, 403},
		{"POST", "/api/v1/services/web/suspend", []string{"Cookie", cookie}, 403},
	}
	for _, tt := range tests {
		w := f.do(tt.method, tt.path, "", tt.hdr...)
		if w.Code != tt.want {
			t.Errorf("%s %s %q: got %d %q, want %d", tt.method, tt.path, tt.hdr, w.Code, truncate(w.Body.String(), 200), tt.want)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", tt.method, tt.path)
		}
		if w.Code == 303 && w.Header().Get("Location") != "/login" {
			t.Errorf("%s %s: redirect to %q, want /login", tt.method, tt.path, w.Header().Get("Location"))
		}
	}
	if got := f.ctl.got(); len(got) != 1 || got[0] != "resume web" {
		t.Errorf("orders: got %q, want only the bearer's resume web", got)
	}
	w := f.do("GET", "/api/v1/status", "")
	if !strings.Contains(w.Body.String(), "--listen-token-file") {
		t.Errorf("401 body %q does not say which token", w.Body)
	}
	w = f.do("POST", "/api/v1/reconcile", "", "Cookie", cookie)
	if !strings.Contains(w.Body.String(), "can read but not order") {
		t.Errorf("403 body %q does not say why", w.Body)
	}
}

func TestLoginWrongToken(t *testing.T) {
	f := tokenFixture(t)
	for _, tok := range []string{"", "wrong", testToken + "x"} {
		w := f.do("POST", "/login", "token="+url.QueryEscape(tok), "Content-Type", "application/x-www-form-urlencoded")
		if w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 || !strings.Contains(w.Body.String(), "not the token") {
			t.Errorf("POST /login token %q: got %d cookies %v, want 401 and no cookie", tok, w.Code, w.Result().Cookies())
		}
	}
}

// TestHostGuard: a Host that names another site (DNS rebinding) is refused;
// IP literals, loopback names, the --listen host and AllowedHosts pass.
func TestHostGuard(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Listen = "drover.lan:7070"
		c.AllowedHosts = []string{"Drover.Example.com"}
	})
	for _, tt := range []struct {
		host, path string
		want       int
	}{
		{"127.0.0.1:7070", "/api/v1/status", 200},
		{"127.0.0.1", "/api/v1/status", 200},
		{"[::1]:7070", "/api/v1/status", 200},
		{"[::1]", "/api/v1/status", 200},
		{"192.0.2.7:7070", "/api/v1/status", 200},
		{"localhost:7070", "/", 200},
		{"LOCALHOST.", "/", 200},
		{"app.localhost:7070", "/", 200},
		{"drover.lan:7070", "/", 200},
		{"drover.example.com", "/metrics", 200},
		{"evil.example:7070", "/api/v1/status", 421},
		{"evil.example", "/", 421},
		{"127.0.0.1.evil.example", "/metrics", 421},
		{"drover.lan.evil.example", "/login", 421},
		{"", "/api/v1/status", 421},
		{"evil.example", "/healthz", 200},
	} {
		w := f.do("GET", tt.path, "", "Host", tt.host)
		if w.Code != tt.want {
			t.Errorf("GET %s Host %q: got %d %q, want %d", tt.path, tt.host, w.Code, truncate(w.Body.String(), 200), tt.want)
		}
		if w.Code == 421 && !strings.Contains(w.Body.String(), "DNS rebinding") {
			t.Errorf("GET %s Host %q: body %q does not say why", tt.path, tt.host, w.Body)
		}
	}
	w := f.do("POST", "/api/v1/services/web/resume", "", "Host", "evil.example")
	if w.Code != 421 || len(f.ctl.got()) != 0 {
		t.Errorf("POST with Host evil.example: %d, orders %q; want 421 and none", w.Code, f.ctl.got())
	}
}

// TestCrossSite: a POST a browser made from another site is refused before anything is
// ordered; the CLI (no Origin, no Sec-Fetch-Site) and this Drover's own pages pass.
func TestCrossSite(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  []string
		want int
	}{
		{"no browser headers", nil, 200},
		{"same origin", []string{"Sec-Fetch-Site", "same-origin"}, 200},
		{"typed by the user", []string{"Sec-Fetch-Site", "none"}, 200},
		{"cross site", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"same site other port", []string{"Sec-Fetch-Site", "same-site"}, 403},
		{"origin other host", []string{"Origin", "http://evil.example"}, 403},
		{"origin same host", []string{"Origin", "http://127.0.0.1:7070"}, 200},
		{"origin null", []string{"Origin", "null"}, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			w := f.do("POST", "/api/v1/services/web/resume", "", tt.hdr...)
			if w.Code != tt.want {
				t.Errorf("POST %q: got %d %s, want %d", tt.hdr, w.Code, w.Body, tt.want)
			}
			if tt.want == 403 && len(f.ctl.got()) != 0 {
				t.Errorf("POST %q: refused but ordered %q", tt.hdr, f.ctl.got())
			}
			if tt.want == 403 && !strings.Contains(w.Body.String(), "cross-site request refused") {
				t.Errorf("POST %q: body %q does not say why", tt.hdr, w.Body)
			}
		})
	}
	f := tokenFixture(t)
	w := f.do("POST", "/login", "token="+testToken, "Content-Type", "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site")
	if w.Code != 403 || len(w.Result().Cookies()) != 0 {
		t.Errorf("cross-site POST /login: %d, cookies %v; want 403 and none (login CSRF)", w.Code, w.Result().Cookies())
	}
}

// TestPagesForbidInlineScript: pages carry a CSP that allows only the page's own
// script file, and no page includes inline script.
func TestPagesForbidInlineScript(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/", "/services/api", "/services/db"} {
		w := f.do("GET", path, "")
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: CSP %q, want script-src 'self' and no unsafe-inline", path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
		}
		body := w.Body.String()
		if n := strings.Count(body, "<script"); n != 1 || !strings.Contains(body, `<script src="/static/app.js" defer></script>`) {
			t.Errorf("GET %s: %d <script> tags, want only the app.js one", path, n)
		}
	}
}

// TestHostileStringsEscaped: a version label or a reason from git shows as text.
func TestHostileStringsEscaped(t *testing.T) {
	f := newFixture(t, nil)
	f.view.publish(reconcilerEvent("rollout_failed", "db", hostileReason))
	for _, path := range []string{"/", "/?partial=1", "/services/db", "/services/db?partial=1"} {
		body := f.do("GET", path, "").Body.String()
		for _, raw := range []string{"<script>alert", "<img src=x", `onerror="`} {
			if strings.Contains(body, raw) {
				t.Errorf("GET %s: raw %q in the page", path, raw)
			}
		}
		if !strings.Contains(body, "&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;") {
			t.Errorf("GET %s: the hostile reason is not shown escaped", path)
		}
	}
}

package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// access is what a request may do.
type access int

const (
	accessNone access = iota
	accessRead        // a browser's login cookie: look, never order
	accessFull        // the bearer token (or no token configured)
)

const cookieName = "drover_read"

// accessOf says what r may do. The cookie is an HMAC of the token, not the token: it
// proves a login happened, and the token stays out of the browser's storage.
func (s *Server) accessOf(r *http.Request) access {
	if s.cfg.Token == "" {
		return accessFull
	}
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
		subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) == 1 {
		return accessFull
	}
	if c, err := r.Cookie(cookieName); err == nil &&
		subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.readCookie())) == 1 {
		return accessRead
	}
	return accessNone
}

func (s *Server) readCookie() string {
	mac := hmac.New(sha256.New, []byte(s.cfg.Token))
	mac.Write([]byte("drover dashboard read-only login v1"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// requireAccess lets through what the request's credentials allow: reads with the
// cookie or the token, orders (any method but GET and HEAD) with the token alone.
// A browser asking for a page without either is sent to /login.
func (s *Server) requireAccess(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.accessOf(r)
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		switch {
		case a == accessFull, a == accessRead && read:
			next.ServeHTTP(w, r)
		case a == accessRead:
			writeError(w, r, http.StatusForbidden,
				"a browser login can read but not order: send the --listen-token-file token as \"Authorization: Bearer <token>\"")
		case read && isPage(r.URL.Path):
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
			writeError(w, r, http.StatusUnauthorized,
				fmt.Sprintf("unauthorized: %s needs the --listen-token-file token as \"Authorization: Bearer <token>\"", r.URL.Path))
		}
	})
}

// isPage is a dashboard page a browser navigates to.
func isPage(path string) bool {
	return path == "/" || strings.HasPrefix(path, "/services/")
}

// guardHost refuses Host headers naming anything but this Drover. A page on
// evil.example whose name the attacker re-points at 127.0.0.1 (DNS rebinding) reaches
// the listener as a same-origin request; its Host header still says evil.example.
// An IP literal cannot be re-pointed, so any is accepted, as are loopback names, the
// --listen host and the AllowedHosts.
func (s *Server) guardHost(next http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true}
	if h, _, err := net.SplitHostPort(s.cfg.Listen); err == nil && h != "" {
		allowed[normHost(h)] = true
	}
	for _, h := range s.cfg.AllowedHosts {
		allowed[normHost(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Host
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = normHost(h)
		if h == "" || !(allowed[h] || strings.HasSuffix(h, ".localhost") || net.ParseIP(h) != nil) {
			writeError(w, r, http.StatusMisdirectedRequest, fmt.Sprintf(
				"Host %q is not this Drover's address: use an IP address, localhost or the --listen host (a guard against DNS rebinding)", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func normHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// guardCrossSite refuses state-changing requests a browser sent from another site
// (Sec-Fetch-Site, else Origin against Host). Requests with neither header are not
// from a browser (the CLI, curl) and pass.
func guardCrossSite(next http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusForbidden, "cross-site request refused: orders must come from this Drover's own pages or a non-browser client")
	}))
	return c.Handler(next)
}

// login trades the token, typed into a form, for the read-only cookie.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Token == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodGet {
		s.render(w, r, s.pages.login, http.StatusOK, loginPage{})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	tok := strings.TrimSpace(r.PostFormValue("token"))
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) != 1 {
		s.render(w, r, s.pages.login, http.StatusUnauthorized, loginPage{Failed: true})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    s.readCookie(),
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type loginPage struct{ Failed bool }

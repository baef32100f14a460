package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// routes lays out the surface. /healthz and /hooks/git stand outside every guard:
// a load balancer probes the one, a git host signs the other. Everything else passes
// the Host guard, the cross-site guard and, but for the login page and static
// assets, the token.
func (s *Server) routes() http.Handler {
	guarded := http.NewServeMux()
	guarded.HandleFunc("GET /status", s.legacyStatus)
	guarded.HandleFunc("GET /api/v1/status", s.apiStatus)
	guarded.HandleFunc("GET /api/v1/history", s.apiHistory)
	guarded.HandleFunc("GET /api/v1/events", s.apiEvents)
	guarded.HandleFunc("POST /api/v1/services/{name}/suspend", s.apiSuspend)
	guarded.HandleFunc("POST /api/v1/services/{name}/resume", s.apiResume)
	guarded.HandleFunc("POST /api/v1/services/{name}/retry", s.apiRetry)
	guarded.HandleFunc("POST /api/v1/reconcile", s.apiReconcile)
	guarded.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "no such API endpoint: "+r.Method+" "+r.URL.Path)
	})
	guarded.HandleFunc("GET /metrics", s.serveMetrics)
	guarded.HandleFunc("GET /{$}", s.fleetPage)
	guarded.HandleFunc("GET /services/{name}", s.servicePage)

	open := http.NewServeMux()
	open.HandleFunc("GET /login", s.login)
	open.HandleFunc("POST /login", s.login)
	open.Handle("GET /static/", s.static())
	open.Handle("/", s.requireAccess(guarded))

	top := http.NewServeMux()
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	if s.cfg.Webhook != nil {
		top.Handle("/hooks/git", s.cfg.Webhook)
	}
	top.Handle("/", s.guardHost(guardCrossSite(open)))
	return securityHeaders(top)
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// apiError is the body of every API error.
type apiError struct {
	Error string `json:"error"`
}

// writeError answers an API path with {"error": msg}, anything else with plain text.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, code, apiError{Error: msg})
		return
	}
	http.Error(w, msg, code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

package main

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/internal/secretfile"
	"github.com/drover-dev/drover/reconciler"
)

// statusHandler serves /healthz (open: it says only "ok") and /status. With a token,
// /status wants "Authorization: Bearer <token>": it names the revision, the plan and
// the last error, which is more than an address on the network should learn.
func statusHandler(r *reconciler.Runner, token string, secrets *redact.Set) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, req *http.Request) {
		if token != "" && !bearerOK(req, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
			http.Error(w, "unauthorized: /status needs the --listen-token-file token as a Bearer token", http.StatusUnauthorized)
			return
		}
		st := r.Status()
		st.Error = secrets.String(st.Error)
		st.Plan = secrets.String(st.Plan)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	return mux
}

func bearerOK(req *http.Request, token string) bool {
	got, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// loopbackListen reports whether addr (host:port) only takes connections from this
// host: a loopback IP or "localhost". An empty host listens on every interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readToken reads a bearer token from a file: one line, surrounding space ignored,
// bounded (a FIFO or a huge file there fails instead of blocking start-up).
func readToken(path string) (string, error) {
	tok, err := secretfile.ReadLine(path)
	if err != nil {
		return "", fmt.Errorf("--listen-token-file: %w", err)
	}
	return tok, nil
}

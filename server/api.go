package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/drover-dev/drover/reconciler"
)

const (
	maxBody      = 64 << 10
	maxReason    = 512 // the reconciler keeps no longer a suspension reason
	maxHistory   = 10000
	maxNameParam = 64
)

// legacyStatus is /status as it was before the API: the runner's record when cmd
// hands it over, else the fleet's status.
func (s *Server) legacyStatus(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Status != nil {
		writeJSON(w, http.StatusOK, s.cfg.Status())
		return
	}
	s.apiStatus(w, r)
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.View.FleetStatus(r.Context())
	if err != nil {
		s.viewError(w, r, "read fleet status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service := q.Get("service")
	if len(service) > maxNameParam {
		writeError(w, r, http.StatusBadRequest, fmt.Sprintf("service: %d bytes, at most %d", len(service), maxNameParam))
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxHistory {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("limit %q: want a whole number from 0 (all kept) to %d", v, maxHistory))
			return
		}
		limit = n
	}
	events, err := s.cfg.View.History(r.Context(), service, limit)
	if err != nil {
		s.viewError(w, r, "read history", err)
		return
	}
	if events == nil {
		events = []reconciler.Event{}
	}
	writeJSON(w, http.StatusOK, events)
}

// suspendRequest is the body of POST /api/v1/services/{name}/suspend; it may be empty.
type suspendRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) apiSuspend(w http.ResponseWriter, r *http.Request) {
	var req suspendRequest
	if err := readJSON(w, r, &req); err != nil {
		writeError(w, r, statusOf(err), err.Error())
		return
	}
	if err := checkReason(req.Reason); err != nil {
		writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	s.order(w, r, "suspend", func(ctx context.Context, svc string) error {
		return s.cfg.Control.Suspend(ctx, svc, req.Reason)
	})
}

func (s *Server) apiResume(w http.ResponseWriter, r *http.Request) {
	s.order(w, r, "resume", s.cfg.Control.Resume)
}

func (s *Server) apiRetry(w http.ResponseWriter, r *http.Request) {
	s.order(w, r, "retry", s.cfg.Control.Retry)
}

func (s *Server) apiReconcile(w http.ResponseWriter, r *http.Request) {
	if err := s.cfg.Control.Reconcile(r.Context()); err != nil {
		s.controlError(w, r, "reconcile", err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"result": "pass requested"})
}

// order runs a per-service order. A service the fleet's status does not list is 404
// here, before Control is asked; with no revision read yet (a standby, a Drover that
// never fetched) the fleet is not known, and Control decides.
func (s *Server) order(w http.ResponseWriter, r *http.Request, verb string, do func(context.Context, string) error) {
	name := r.PathValue("name")
	st, err := s.cfg.View.FleetStatus(r.Context())
	if err != nil {
		s.viewError(w, r, "read fleet status", err)
		return
	}
	i := slices.IndexFunc(st.Services, func(svc reconciler.ServiceStatus) bool { return svc.Name == name })
	if i < 0 && st.Revision != "" {
		names := make([]string, len(st.Services))
		for j, svc := range st.Services {
			names[j] = svc.Name
		}
		known := "none"
		if len(names) > 0 {
			known = strings.Join(names, ", ")
		}
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("%s: no service %q in fleet %q at %s (services: %s)",
			verb, truncate(name, maxNameParam), st.Fleet, shortRev(st.Revision), known))
		return
	}
	if err := do(r.Context(), name); err != nil {
		s.controlError(w, r, verb+" "+name, err)
		return
	}
	s.log.Info("operator order", "order", verb, "service", name, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"result": verb + " " + name + ": done"})
}

func (s *Server) viewError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Warn("api: "+what, "path", r.URL.Path, "err", err)
	writeError(w, r, http.StatusServiceUnavailable, what+": "+err.Error())
}

func (s *Server) controlError(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.log.Warn("api: "+what, "err", err)
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, reconciler.ErrUnknownService):
		code = http.StatusNotFound
	case errors.Is(err, reconciler.ErrNotHeld):
		code = http.StatusConflict
	case errors.Is(err, reconciler.ErrNotRunning), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// A standby, or a Drover shutting down: another (the leader) may take it.
		code = http.StatusServiceUnavailable
	}
	writeError(w, r, code, what+": "+err.Error())
}

// badRequest carries the status an input error answers with.
type badRequest struct {
	code int
	msg  string
}

func (e *badRequest) Error() string { return e.msg }

func statusOf(err error) int {
	var b *badRequest
	if errors.As(err, &b) {
		return b.code
	}
	return http.StatusBadRequest
}

// readJSON decodes a bounded, strict JSON body into v; an empty body leaves v alone.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &badRequest{http.StatusRequestEntityTooLarge, fmt.Sprintf("body: over %d bytes", maxBody)}
		}
		return &badRequest{http.StatusBadRequest, fmt.Sprintf("body: %v", err)}
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &badRequest{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want application/json", truncate(ct, 64))}
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &badRequest{http.StatusBadRequest, fmt.Sprintf("body: %v (want {\"reason\": \"...\"})", err)}
	}
	if dec.More() {
		return &badRequest{http.StatusBadRequest, "body: more than one JSON value"}
	}
	return nil
}

func checkReason(reason string) error {
	if len(reason) > maxReason {
		return fmt.Errorf("reason: %d bytes, at most %d", len(reason), maxReason)
	}
	for i, c := range reason {
		if c == unicode.ReplacementChar || !unicode.IsPrint(c) && c != ' ' {
			return fmt.Errorf("reason: unprintable character %U at byte %d", c, i)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	if rev == "" {
		return "no revision yet"
	}
	return rev
}

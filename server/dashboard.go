package server

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

//go:embed web
var webFS embed.FS

// csp allows the page its own stylesheet, script and API, and nothing else: no inline
// script or style, so a hostile string that got past escaping still could not run.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// historyOnPage is how many events a service page shows.
const historyOnPage = 200

// kinds are the event names the page's script listens for.
var kinds = []reconciler.EventKind{
	reconciler.EventRolloutStarted, reconciler.EventRolloutSucceeded, reconciler.EventRolloutFailed,
	reconciler.EventRolledBack, reconciler.EventVMCreated, reconciler.EventVMRetired,
	reconciler.EventDriftRepaired, reconciler.EventChaos, reconciler.EventRevisionHeld,
	reconciler.EventRevisionReleased, reconciler.EventLeaderAcquired, reconciler.EventLeaderLost,
	reconciler.EventSuspended, reconciler.EventResumed,
}

type pages struct {
	fleet, service, login *template.Template
}

func newPages() (*pages, error) {
	funcs := template.FuncMap{
		"short": func(rev string) string { return rev[:min(len(rev), 12)] },
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"kinds": func() string {
			s := make([]string, len(kinds))
			for i, k := range kinds {
				s[i] = string(k)
			}
			return strings.Join(s, " ")
		},
	}
	base, err := template.New("layout").Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/parts.html")
	if err != nil {
		return nil, fmt.Errorf("parse dashboard templates: %w", err)
	}
	page := func(file string) (*template.Template, error) {
		t, err := template.Must(base.Clone()).ParseFS(webFS, "web/"+file)
		if err != nil {
			return nil, fmt.Errorf("parse dashboard template %s: %w", file, err)
		}
		return t, nil
	}
	var p pages
	for file, dst := range map[string]**template.Template{"fleet.html": &p.fleet, "service.html": &p.service, "login.html": &p.login} {
		if *dst, err = page(file); err != nil {
			return nil, err
		}
	}
	return &p, nil
}

func (s *Server) static() http.Handler {
	sub, _ := fs.Sub(webFS, "web/static")
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// fleetView is what the fleet page renders.
type fleetView struct {
	clock
	St       reconciler.FleetStatus
	Err      string
	Services []serviceView
	// The fleet at a glance.
	VMs, Passing, Rolling, Held, Suspended int
}

// serviceView is one service's card.
type serviceView struct {
	clock
	reconciler.ServiceStatus
	// Current counts the passing instances of the desired version.
	Current int
	Rolling bool
	// Missing says the service has history but is no longer in the fleet.
	Missing bool
	// Rows are the VMs, formatted here: a fleet of 1,000 VMs renders in a few ms
	// only if the template does no method calls per row.
	Rows []vmRow
}

// vmRow is flat on purpose: templates find an embedded field by a slow search.
type vmRow struct {
	Name, Version, State, Health, Address, Created, Age string
}

type servicePage struct {
	Service serviceView
	Fleet   string
	Err     string
	History []reconciler.Event
	clock
}

// clock gives templates ages relative to one instant per render.
type clock struct{ now time.Time }

// Age is how long ago t was, short: 4s, 3m12s, 5h3m, 2d4h.
func (c clock) Age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := c.now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func (s *Server) newServiceView(c clock, svc reconciler.ServiceStatus) serviceView {
	v := serviceView{clock: c, ServiceStatus: svc, Rolling: svc.Phase == "rolling-out" && svc.Progress.Wanted > 0,
		Rows: make([]vmRow, len(svc.VMs))}
	for i, vm := range svc.VMs {
		v.Rows[i] = vmRow{Name: vm.Name, Version: vm.Version, State: vm.State, Health: vm.Health, Address: vm.Address,
			Created: vm.Created.UTC().Format(time.RFC3339), Age: c.Age(vm.Created)}
	}
	for _, vc := range svc.Versions {
		if vc.Version == svc.Version {
			v.Current += vc.Passing
		}
	}
	return v
}

func (s *Server) fleetPage(w http.ResponseWriter, r *http.Request) {
	c := clock{s.cfg.Now()}
	v := fleetView{clock: c}
	code := http.StatusOK
	st, err := s.cfg.View.FleetStatus(r.Context())
	if err != nil {
		v.Err, code = err.Error(), http.StatusServiceUnavailable
	}
	v.St = st
	for _, svc := range st.Services {
		sv := s.newServiceView(c, svc)
		v.Services = append(v.Services, sv)
		v.VMs += len(svc.VMs)
		for _, vm := range svc.VMs {
			if vm.Health == "passing" {
				v.Passing++
			}
		}
		v.Rolling += b2i(sv.Rolling)
		v.Held += b2i(svc.Held != nil)
		v.Suspended += b2i(svc.Suspended != nil)
	}
	if r.URL.Query().Get("partial") != "" {
		s.renderPart(w, r, s.pages.fleet, "fleet", v)
		return
	}
	s.render(w, r, s.pages.fleet, code, v)
}

func (s *Server) servicePage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c := clock{s.cfg.Now()}
	p := servicePage{clock: c}
	code := http.StatusOK
	st, err := s.cfg.View.FleetStatus(r.Context())
	if err != nil {
		p.Err, code = err.Error(), http.StatusServiceUnavailable
	}
	p.Fleet = st.Fleet
	i := slices.IndexFunc(st.Services, func(svc reconciler.ServiceStatus) bool { return svc.Name == name })
	if i >= 0 {
		p.Service = s.newServiceView(c, st.Services[i])
	} else {
		p.Service = serviceView{clock: c, ServiceStatus: reconciler.ServiceStatus{Name: name}, Missing: true}
	}
	h, err := s.cfg.View.History(r.Context(), name, historyOnPage)
	switch {
	case err != nil:
		p.Err, code = strings.TrimPrefix(p.Err+"; ", "; ")+"history: "+err.Error(), http.StatusServiceUnavailable
	case i < 0 && len(h) == 0 && p.Err == "":
		p.Err, code = fmt.Sprintf("no service %q in fleet %q, and no history for one", truncate(name, maxNameParam), st.Fleet), http.StatusNotFound
	}
	p.History = make([]reconciler.Event, len(h))
	for j, e := range h { // newest first; h is the View's, left as it is
		p.History[len(h)-1-j] = e
	}
	if r.URL.Query().Get("partial") != "" {
		s.renderPart(w, r, s.pages.service, "servicemain", p)
		return
	}
	s.render(w, r, s.pages.service, code, p)
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, t *template.Template, code int, data any) {
	s.renderPage(w, r, t, "layout", code, data)
}

// renderPart answers the page's script with the live part alone. It is always 200 so
// an error shows in place instead of leaving stale numbers up.
func (s *Server) renderPart(w http.ResponseWriter, r *http.Request, t *template.Template, name string, data any) {
	s.renderPage(w, r, t, name, http.StatusOK, data)
}

func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, t *template.Template, name string, code int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("dashboard: render", "page", r.URL.Path, "err", err)
		http.Error(w, "render failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

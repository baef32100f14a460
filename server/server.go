package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// Config is what New needs. View and Control are required; the rest is optional.
type Config struct {
	View    reconciler.View
	Control reconciler.Control
	// Token, when set, is the bearer token every path but /healthz, /hooks/git, /login
	// and /static/ wants. A browser trades it at /login for a cookie that can read but
	// never order.
	Token string
	// Listen is the --listen address (host:port). Its host, loopback names and IP
	// literals are the Host headers accepted; any other name is refused (DNS rebinding).
	Listen string
	// AllowedHosts are more host names accepted in the Host header (a reverse proxy's).
	AllowedHosts []string
	Log          *slog.Logger
	// Webhook, when set, is mounted at /hooks/git. It checks its own signatures: the
	// token, Host and cross-site guards do not apply to it.
	Webhook http.Handler
	// Status, when set, is what /status encodes (the runner's own record, as before the
	// API existed); else /status is the FleetStatus.
	Status func() any
	// MaxStreams bounds the event streams open at once (default 64); more get 503.
	MaxStreams int
	// Heartbeat is how often an idle event stream gets a comment line (default 15s),
	// so proxies keep it open and a dead client is noticed.
	Heartbeat time.Duration
	// Now is the clock for ages on the dashboard (default time.Now).
	Now func() time.Time
	// Metrics, optional, is made with NewMetrics before the reconciler and sources
	// that report to it (they exist before the View this server needs); default a
	// fresh one.
	Metrics *Metrics
}

// Server is the HTTP surface. Create it with New, serve it with Serve (or mount
// Handler and call Run yourself).
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	pages   *pages
	streams chan struct{}
	handler http.Handler
}

// New checks cfg and builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.View == nil || cfg.Control == nil {
		return nil, errors.New("server: Config.View and Config.Control are required")
	}
	if cfg.Listen != "" {
		if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
			return nil, fmt.Errorf("server: listen address %q: %w", cfg.Listen, err)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 64
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p, err := newPages()
	if err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		metrics: cfg.Metrics,
		pages:   p,
		streams: make(chan struct{}, cfg.MaxStreams),
	}
	s.handler = s.routes()
	return s, nil
}

// Metrics is where the reconciler and the sources report what the View does not hold
// (pass durations, gate waits, bytes fetched). cmd passes it to them.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Handler serves every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Run follows the View's events into the metrics derived from them (rollouts by
// result, events by kind) until ctx ends. Serve runs it; call it yourself only when
// mounting Handler elsewhere.
func (s *Server) Run(ctx context.Context) error {
	events, cancel := s.cfg.View.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			s.metrics.observeEvent(e)
		}
	}
}

// Serve serves ln until ctx ends, then closes open streams and returns nil; any other
// end is an error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// No WriteTimeout: event streams live long; each write of theirs has its own
		// deadline (sse.go).
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go s.Run(runCtx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
		srv.Close()
		<-errc
		return nil
	}
}

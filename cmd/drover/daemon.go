package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor/libvirt"
	"github.com/drover-dev/drover/hypervisor/qemu"
	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/notify"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/server"
	"github.com/drover-dev/drover/sources"
)

// daemon is the wired-up Drover: a source, a reconciler over a driver and Consul.
type daemon struct {
	opts       options
	log        *slog.Logger
	source     *sources.Git
	registry   *discovery.Client // the process's one Consul client
	reconciler *reconciler.Reconciler
	closers    []func() error
	// secrets are the credentials Drover knows (in --repo, read from the --git-*
	// files, the --listen-token-file token), masked wherever Drover prints; the git
	// source adds to them as it reads its files again.
	secrets *redact.Set
	// listenToken guards /status when set (--listen-token-file).
	listenToken string
	// metrics is /metrics: made first, so the parts that report to it get it.
	metrics *server.Metrics
	// tracked is source remembering the last revision read, for the progress display.
	tracked *recordingSource
	// notifier sends events to --notify-url receivers; nil without any. Run it on the
	// reconciler's View with startNotifier.
	notifier *notify.Notifier
}

func build(ctx context.Context, o options, log *slog.Logger, secrets *redact.Set) (*daemon, error) {
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", o.stateDir, err)
	}
	d := &daemon{opts: o, log: log, secrets: secrets, metrics: server.NewMetrics()}
	if o.listenTokenFile != "" {
		tok, err := readToken(o.listenTokenFile)
		if err != nil {
			return nil, err
		}
		d.listenToken = tok
		secrets.Add(tok)
	}
	notifier, err := newNotifier(o.notify, log)
	if err != nil {
		return nil, err
	}
	d.notifier = notifier
	git, err := sources.NewGit(sources.GitConfig{URL: o.repo, Branch: o.branch, Ref: o.ref, Path: o.path, Dir: filepath.Join(o.stateDir, "git"), Timeout: o.gitTimeout,
		VerifySignatures: o.verifySignatures, TrustedKeys: o.gitTrustedKeys, AllowedSigners: o.gitAllowedSigners,
		Auth: o.gitAuth, Secrets: secrets, Metrics: d.metrics}, log)
	if err != nil {
		return nil, err
	}
	d.source, d.tracked = git, &recordingSource{Source: git}
	imageCfg := o.limits.imageCache(filepath.Join(o.stateDir, "images"))
	imageCfg.Metrics = d.metrics
	images, err := sources.NewImageCache(imageCfg, log)
	if err != nil {
		return nil, err
	}
	registry, err := discovery.New(discovery.Config{Address: o.consul, CallTimeout: o.consulTimeout}, log)
	if err != nil {
		return nil, err
	}
	d.registry = registry
	hv, err := newDriver(ctx, o, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, hv.Close)
	hook, err := crashHook(log)
	if err != nil {
		d.close()
		return nil, err
	}
	audited := auditedRegistry{registry, log}
	d.reconciler, err = reconciler.New(reconciler.Config{Fleet: o.fleetName(), Hypervisor: auditedDriver{hv, log}, Registrar: audited, Health: registry, Failures: audited, Reservations: audited, Images: images, ImageGC: images, History: git, Log: log, Hook: hook,
		Chaos: !o.once, ReplaceUnhealthyAfter: o.replaceUnhealthyAfter, Budget: o.limits.budget(), ImageGCGrace: o.imageGCGrace,
		// The raw client: ring appends are fenced by the reconciler already.
		Events: registry, Secrets: secrets, Metrics: d.metrics})
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// driver is a hypervisor driver as the daemon holds it: the reconciler's view plus Close.
type driver interface {
	reconciler.Hypervisor
	Close() error
}

// The server's metrics take what each part reports.
var (
	_ sources.GitMetrics     = (*server.Metrics)(nil)
	_ sources.ImageMetrics   = (*server.Metrics)(nil)
	_ reconciler.PassMetrics = (*server.Metrics)(nil)
	_ reconciler.GateMetrics = (*server.Metrics)(nil)
)

var (
	_ driver = (*libvirt.Driver)(nil)
	_ driver = (*qemu.Driver)(nil)
)

func newDriver(ctx context.Context, o options, log *slog.Logger) (driver, error) {
	switch o.driver {
	case "libvirt":
		return libvirt.New(ctx, libvirt.Config{URI: o.libvirtURI, StateDir: o.stateDir}, log)
	case "qemu":
		return qemu.New(ctx, qemu.Config{StateDir: o.stateDir}, log)
	default:
		return nil, fmt.Errorf("unknown driver %q", o.driver)
	}
}

func (d *daemon) close() {
	for _, c := range d.closers {
		if err := c(); err != nil {
			d.log.Warn("close", "err", err)
		}
	}
}

func (d *daemon) plan(ctx context.Context) (string, error) {
	rev, err := d.tracked.Read(ctx)
	if err != nil {
		return "", err
	}
	p, err := d.reconciler.Plan(ctx, rev)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

func (d *daemon) run(ctx context.Context) error {
	// A health check changing state (a VM died, say) starts the next pass at once
	// instead of after --interval.
	wake := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go d.registry.WatchHealth(watchCtx, func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	runner := &reconciler.Runner{
		Source:     d.tracked,
		Reconciler: d.reconciler,
		Interval:   d.opts.interval,
		Once:       d.opts.once,
		Log:        d.log,
		MaxBackoff: max(d.opts.interval, 5*time.Minute),
		Wake:       wake,
		Metrics:    d.metrics,
	}
	// Receivers get every event, those of the shutdown too: the notifier outlives Run
	// by what the queues need to drain (5 s at most).
	notifyCtx, stopNotify := context.WithCancel(context.WithoutCancel(ctx))
	waitNotify := startNotifier(notifyCtx, d.notifier, d.reconciler)
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.reconciler.FlushEvents(fctx)
		stopNotify()
		waitNotify()
	}()
	var leader *reconciler.Leader
	if d.opts.leaderLock {
		leader = &reconciler.Leader{Elector: d.registry, Fleet: d.opts.fleetName(), Once: d.opts.once, Log: d.log, Reconciler: d.reconciler}
	}
	if d.opts.listen != "" {
		stop, err := d.serve(ctx, runner, leader)
		if err != nil {
			return err
		}
		defer stop()
	}
	d.log.Info("drover running", "version", version, "repo", d.source.DisplayURL(), "ref", d.source.Config().Ref, "fleet", d.opts.fleetName(), "driver", d.opts.driver, "once", d.opts.once, "leader_lock", d.opts.leaderLock)
	if leader == nil {
		return runner.Run(ctx)
	}
	return leader.Run(ctx, runner.Run)
}

// serve starts the HTTP surface on --listen: the API, dashboard, metrics and, with
// --webhook-secret-file, /hooks/git. stop ends it.
func (d *daemon) serve(ctx context.Context, runner *reconciler.Runner, leader *reconciler.Leader) (stop func(), err error) {
	op := &reconciler.Operator{Reconciler: d.reconciler, Runner: runner, Leader: leader}
	cfg := server.Config{View: op, Control: op, Token: d.listenToken, Listen: d.opts.listen, Log: d.log, Metrics: d.metrics,
		// /status stays the runner's own record, as before the API existed.
		Status: func() any {
			st := runner.Status()
			st.Error, st.Plan = d.secrets.String(st.Error), d.secrets.String(st.Plan)
			return st
		}}
	ctx, cancel := context.WithCancel(ctx)
	if d.opts.webhookSecretFile != "" {
		hook, err := newWebhook(d.opts.webhookSecretFile, d.source.Ref(), runner, d.secrets, d.log)
		if err != nil {
			cancel()
			return nil, err
		}
		go hook.Run(ctx)
		cfg.Webhook = hook
	}
	srv, err := server.New(cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	ln, err := net.Listen("tcp", d.opts.listen)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("listen %s: %w", d.opts.listen, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			d.log.Error("http server", "err", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	d.log.Info("status endpoint", "url", base+"/status", "dashboard", base+"/", "metrics", base+"/metrics", "webhook", d.opts.webhookSecretFile != "")
	return func() { cancel(); <-done }, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger masks secrets (and any URL's credentials) in every line, those added to the
// set later too.
func newLogger(w io.Writer, format, level string, secrets *redact.Set) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redact.SetHandler(h, secrets))
}

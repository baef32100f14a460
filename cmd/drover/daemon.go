package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	// secrets are the credentials in --repo, masked wherever Drover prints.
	secrets []string
	// listenToken guards /status when set (--listen-token-file).
	listenToken string
	// notifier sends events to --notify-url receivers; nil without any. Run it on the
	// reconciler's View with startNotifier.
	notifier *notify.Notifier
}

func build(ctx context.Context, o options, log *slog.Logger) (*daemon, error) {
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", o.stateDir, err)
	}
	d := &daemon{opts: o, log: log, secrets: redact.URLSecrets(o.repo)}
	if o.listenTokenFile != "" {
		tok, err := readToken(o.listenTokenFile)
		if err != nil {
			return nil, err
		}
		d.listenToken = tok
	}
	notifier, err := newNotifier(o.notify, log)
	if err != nil {
		return nil, err
	}
	d.notifier = notifier
	git, err := sources.NewGit(sources.GitConfig{URL: o.repo, Branch: o.branch, Path: o.path, Dir: filepath.Join(o.stateDir, "git"), Timeout: o.gitTimeout}, log)
	if err != nil {
		return nil, err
	}
	d.source = git
	images, err := sources.NewImageCache(o.limits.imageCache(filepath.Join(o.stateDir, "images")), log)
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
	d.reconciler, err = reconciler.New(reconciler.Config{Fleet: o.fleetName(), Hypervisor: auditedDriver{hv, log}, Registrar: audited, Health: registry, Failures: audited, Images: images, ImageGC: images, History: git, Log: log, Hook: hook,
		Chaos: !o.once, ReplaceUnhealthyAfter: o.replaceUnhealthyAfter, Budget: o.limits.budget(), ImageGCGrace: o.imageGCGrace})
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

func (d *daemon) plan(ctx context.Context, out io.Writer) error {
	rev, err := d.source.Read(ctx)
	if err != nil {
		return err
	}
	p, err := d.reconciler.Plan(ctx, rev)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, p.String())
	return err
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
		Source:     d.source,
		Reconciler: d.reconciler,
		Interval:   d.opts.interval,
		Once:       d.opts.once,
		Log:        d.log,
		MaxBackoff: max(d.opts.interval, 5*time.Minute),
		Wake:       wake,
	}
	if d.opts.listen != "" {
		ln, err := net.Listen("tcp", d.opts.listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", d.opts.listen, err)
		}
		srv := &http.Server{Handler: statusHandler(runner, d.listenToken, d.secrets), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("status server", "err", err)
			}
		}()
		defer srv.Close()
		d.log.Info("status endpoint", "url", "http://"+ln.Addr().String()+"/status")
	}
	d.log.Info("drover running", "version", version, "repo", d.source.DisplayURL(), "branch", d.opts.branch, "fleet", d.opts.fleetName(), "driver", d.opts.driver, "once", d.opts.once, "leader_lock", d.opts.leaderLock)
	if !d.opts.leaderLock {
		return runner.Run(ctx)
	}
	leader := &reconciler.Leader{Elector: d.registry, Fleet: d.opts.fleetName(), Once: d.opts.once, Log: d.log}
	return leader.Run(ctx, runner.Run)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// newLogger masks secrets (and any URL's credentials) in every line.
func newLogger(w io.Writer, format, level string, secrets []string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redact.Handler(h, secrets))
}

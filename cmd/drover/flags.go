package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
)

// options are every flag of run and plan; each also reads DROVER_<FLAG> from the environment.
type options struct {
	repo   string
	branch string
	path   string
	// gitTimeout bounds each git operation (a fetch, a read).
	gitTimeout time.Duration
	fleet      string // empty: derived from repo, branch and path (fleetName)
	interval   time.Duration
	driver     string
	libvirtURI string
	stateDir   string
	consul     string
	// consulTimeout bounds every call to the Consul agent.
	consulTimeout time.Duration
	listen        string
	// listenTokenFile holds the bearer token /status wants; required off loopback.
	listenTokenFile string
	once            bool
	leaderLock      bool
	// replaceUnhealthyAfter: how long a VM may fail its check before it is replaced.
	replaceUnhealthyAfter time.Duration
	logFormat             string
	logLevel              string
	limits
	notify notifyOptions
}

func (o *options) register(fs *flag.FlagSet, withRun bool) {
	fs.StringVar(&o.repo, "repo", "", "git repository holding the fleet: a URL or a local path (required)")
	fs.StringVar(&o.branch, "branch", "main", "branch to track")
	fs.StringVar(&o.path, "path", "fleet.yaml", "fleet file, or directory of *.yaml files, inside the repository")
	fs.DurationVar(&o.gitTimeout, "git-timeout", sources.DefaultGitTimeout, "bound on each git operation (fetch, read): a git server that accepts and never\n"+
		"answers fails the fetch instead of hanging Drover while it holds the leader lock")
	fs.StringVar(&o.fleet, "fleet", "", "name of this fleet (lower-case letters, digits, '-'); drover manages only the VMs and\n"+
		"Consul instances labelled with it. Default: a hash of --repo, --branch and --path.\n"+
		"Set it to keep a fleet's identity when its repository moves")
	fs.StringVar(&o.driver, "driver", "libvirt", "hypervisor driver: libvirt (through libvirtd) or qemu (runs qemu-system-x86_64 itself; user networking only)")
	fs.StringVar(&o.libvirtURI, "libvirt-uri", "qemu:///system", "libvirt connection URI (with --driver libvirt)")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/drover", "directory for the git clone, the image cache and VM overlays")
	fs.StringVar(&o.consul, "consul", "127.0.0.1:8500", "Consul agent HTTP address (the token comes from CONSUL_HTTP_TOKEN)")
	fs.DurationVar(&o.consulTimeout, "consul-timeout", discovery.DefaultCallTimeout, "bound on every call to the Consul agent (blocking queries wait less than it):\n"+
		"an agent that accepts and never answers cannot stall Drover or keep its lock")
	o.limits.register(fs)
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if withRun {
		fs.DurationVar(&o.interval, "interval", 30*time.Second, "how often to fetch the repository and run a pass")
		fs.StringVar(&o.listen, "listen", "127.0.0.1:7070", "address for /healthz and /status (empty disables)")
		fs.StringVar(&o.listenTokenFile, "listen-token-file", "", "file holding a bearer token that /status requires (/healthz stays open).\n"+
			"Required when --listen is not a loopback address: /status shows the plan and errors")
		fs.BoolVar(&o.once, "once", false, "run passes until the fleet matches the commit (exit 0) or the revision fails (exit 1)")
		fs.DurationVar(&o.replaceUnhealthyAfter, "replace-unhealthy-after", 5*time.Minute, "replace a running VM that has failed its check this long (after its healthy_deadline)")
		o.notify.register(fs)
		fs.BoolVar(&o.leaderLock, "leader-lock", true, "take a Consul lock per fleet so only one drover acts; others wait as standbys.\n"+
			"With false, every drover started on the fleet acts at once: run only one")
	}
}

// envDefaults sets each flag not given on the command line from DROVER_<FLAG>, so flags
// win over the environment and the environment over defaults.
func envDefaults(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		key := "DROVER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			set := f.Value.Set
			if list, ok := f.Value.(*stringList); ok {
				set = list.setList
			}
			if err := set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", key, redact.String(v), err))
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (o *options) validate(withRun bool) error {
	var problems []string
	if o.repo == "" {
		problems = append(problems, "--repo is required (or DROVER_REPO)")
	}
	if o.fleet != "" {
		if err := reconciler.ValidFleet(o.fleet); err != nil {
			problems = append(problems, "--fleet: "+err.Error())
		}
	}
	if o.driver != "libvirt" && o.driver != "qemu" {
		problems = append(problems, fmt.Sprintf("--driver %q: want libvirt or qemu", o.driver))
	}
	if o.stateDir == "" {
		problems = append(problems, "--state-dir must not be empty")
	}
	if o.gitTimeout <= 0 {
		problems = append(problems, fmt.Sprintf("--git-timeout %s: must be positive", o.gitTimeout))
	}
	if o.consulTimeout < 100*time.Millisecond {
		problems = append(problems, fmt.Sprintf("--consul-timeout %s: want at least 100ms", o.consulTimeout))
	}
	problems = append(problems, o.limits.validate()...)
	if o.logFormat != "text" && o.logFormat != "json" {
		problems = append(problems, fmt.Sprintf("--log-format %q: want text or json", o.logFormat))
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		problems = append(problems, err.Error())
	}
	if withRun && o.replaceUnhealthyAfter <= 0 {
		problems = append(problems, fmt.Sprintf("--replace-unhealthy-after %s: must be positive", o.replaceUnhealthyAfter))
	}
	if withRun && o.listen != "" && !loopbackListen(o.listen) && o.listenTokenFile == "" {
		problems = append(problems, fmt.Sprintf("--listen %s is not a loopback address: set --listen-token-file FILE (a bearer token for /status), or listen on 127.0.0.1", o.listen))
	}
	if withRun {
		problems = append(problems, o.notify.validate()...)
	}
	if withRun && o.interval <= 0 {
		problems = append(problems, fmt.Sprintf("--interval %s: must be positive", o.interval))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

// fleetName is the fleet's name: --fleet, or else the ID of what it tracks.
func (o options) fleetName() string {
	if o.fleet != "" {
		return o.fleet
	}
	return reconciler.FleetID(o.repo, o.branch, o.path)
}

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
	branch string // empty: main, unless ref says otherwise
	// ref is what to track: branch:NAME, tag:NAME, semver:RANGE or commit:SHA.
	ref  string
	path string
	// verifySignatures: act only on commits (or tags) signed by a trusted key.
	verifySignatures  bool
	gitTrustedKeys    string
	gitAllowedSigners string
	// gitTimeout bounds each git operation (a fetch, a read).
	gitTimeout time.Duration
	// gitAuth: how to authenticate to the repository (SSH key, token files, CA).
	gitAuth    sources.GitAuth
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
	// webhookSecretFile enables /hooks/git: pushes signed with this secret trigger a pass.
	webhookSecretFile string
	once              bool
	leaderLock        bool
	// replaceUnhealthyAfter: how long a VM may fail its check before it is replaced.
	replaceUnhealthyAfter time.Duration
	logFormat             string
	logLevel              string
	limits
	notify notifyOptions
}

func (o *options) register(fs *flag.FlagSet, withRun bool) {
	fs.StringVar(&o.repo, "repo", "", "git repository holding the fleet: a URL or a local path (required)")
	fs.StringVar(&o.branch, "branch", "", "branch to track (default main): shorthand for --ref branch:NAME")
	fs.StringVar(&o.ref, "ref", "", "what to track: branch:NAME, tag:NAME (followed when it moves), semver:RANGE (the highest\n"+
		"tag in the range; pre-releases only when the range names one) or commit:SHA (pinned). Default branch:main")
	fs.BoolVar(&o.verifySignatures, "verify-signatures", false, "act only on a head commit (for tag and semver refs, an annotated tag) signed by a key of\n"+
		"--git-trusted-keys or --git-allowed-signers; otherwise keep the last good revision")
	fs.StringVar(&o.gitTrustedKeys, "git-trusted-keys", "", "file holding an armored OpenPGP keyring whose keys --verify-signatures trusts")
	fs.StringVar(&o.gitAllowedSigners, "git-allowed-signers", "", "OpenSSH allowed_signers file (ssh-keygen(1)) whose keys --verify-signatures trusts for SSH\n"+
		"signatures (namespace git); cert-authority and valid-after/valid-before are refused")
	fs.StringVar(&o.path, "path", "fleet.yaml", "fleet file, or directory of *.yaml files, inside the repository")
	fs.DurationVar(&o.gitTimeout, "git-timeout", sources.DefaultGitTimeout, "bound on each git operation (fetch, read): a git server that accepts and never\n"+
		"answers fails the fetch instead of hanging Drover while it holds the leader lock")
	fs.StringVar(&o.gitAuth.SSHKeyFile, "git-ssh-key", "", "private key (a deploy key) for an ssh:// --repo; needs --git-known-hosts")
	fs.StringVar(&o.gitAuth.SSHKeyPassphraseFile, "git-ssh-key-passphrase-file", "", "file holding the passphrase of an encrypted --git-ssh-key")
	fs.BoolVar(&o.gitAuth.SSHAgent, "git-ssh-agent", false, "authenticate an ssh:// --repo with the keys of the agent at $SSH_AUTH_SOCK (never used unless set)")
	fs.StringVar(&o.gitAuth.KnownHostsFile, "git-known-hosts", "", "known_hosts file with the host keys of the ssh:// --repo's server (required for ssh://):\n"+
		"an unknown, changed or @revoked host key fails the fetch, never accepted")
	fs.StringVar(&o.gitAuth.Username, "git-username", "", "HTTP basic authentication user for an https:// --repo, with --git-password-file or --git-token-file")
	fs.StringVar(&o.gitAuth.PasswordFile, "git-password-file", "", "file holding the password of --git-username; read again at every fetch")
	fs.StringVar(&o.gitAuth.TokenFile, "git-token-file", "", "file holding an access token for an https:// --repo, sent as the password of --git-username\n"+
		"(default user "+sources.DefaultTokenUser+"); read again at every fetch, so a rotated token needs no restart")
	fs.StringVar(&o.gitAuth.CAFile, "git-ca-file", "", "PEM file of CA certificates trusted for an https:// --repo, beside the system's")
	fs.StringVar(&o.fleet, "fleet", "", "name of this fleet (lower-case letters, digits, '-'); drover manages only the VMs and\n"+
		"Consul instances labelled with it. Default: a hash of --repo, --ref (or --branch) and --path.\n"+
		"Set it to keep a fleet's identity when its repository moves")
	fs.StringVar(&o.driver, "driver", "libvirt", "hypervisor driver: libvirt (through libvirtd) or qemu (runs qemu-system-x86_64 itself; user and bridge networking, not libvirt networks)")
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
		fs.StringVar(&o.listen, "listen", "127.0.0.1:7070", "address of the dashboard (/), the API (/api/v1/…), /metrics, /status, /healthz and,\n"+
			"with --webhook-secret-file, /hooks/git (empty disables all of them)")
		fs.StringVar(&o.listenTokenFile, "listen-token-file", "", "file holding a bearer token that every path of --listen requires but /healthz and /hooks/git\n"+
			"(a browser trades it at /login for a read-only cookie). Required when --listen is not a\n"+
			"loopback address: the API shows the plan and errors, and orders suspend, resume and retry")
		fs.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file holding the secret of the git host's push webhook (>= 16 bytes). With it, --listen\n"+
			"serves /hooks/git: a push to the tracked ref, signed by GitHub (X-Hub-Signature-256), Gitea/Forgejo\n"+
			"(X-Gitea-Signature) or GitLab (X-Gitlab-Token), fetches and runs a pass at once; polling stays the fallback")
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
	if o.repo != "" {
		if err := sources.CheckGitAuth(o.repo, o.gitAuth); err != nil {
			problems = append(problems, redact.String(err.Error()))
		}
	}
	if _, err := o.trackedRef(); err != nil {
		problems = append(problems, err.Error())
	}
	if o.verifySignatures && o.gitTrustedKeys == "" && o.gitAllowedSigners == "" {
		problems = append(problems, "--verify-signatures needs --git-trusted-keys FILE or --git-allowed-signers FILE")
	}
	if !o.verifySignatures && (o.gitTrustedKeys != "" || o.gitAllowedSigners != "") {
		problems = append(problems, "--git-trusted-keys and --git-allowed-signers are used only with --verify-signatures: set it too")
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
	if withRun && o.webhookSecretFile != "" && o.listen == "" {
		problems = append(problems, "--webhook-secret-file needs --listen: the webhook is served there at /hooks/git")
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
	// A branch keeps the ID it had before --ref existed.
	what := o.ref
	if ref, err := o.trackedRef(); err == nil && ref.Kind == sources.RefBranch {
		what = ref.Name
	}
	return reconciler.FleetID(o.repo, what, o.path)
}

// trackedRef is what --ref and --branch say to track; they must agree when both are
// given.
func (o options) trackedRef() (sources.Ref, error) {
	if o.ref == "" {
		branch := o.branch
		if branch == "" {
			branch = "main"
		}
		ref, err := sources.BranchRef(branch)
		if err != nil {
			return sources.Ref{}, fmt.Errorf("--branch: %w", err)
		}
		return ref, nil
	}
	ref, err := sources.ParseRef(o.ref)
	if err != nil {
		return sources.Ref{}, fmt.Errorf("--ref: %w", err)
	}
	if o.branch != "" && (ref.Kind != sources.RefBranch || ref.Name != o.branch) {
		return sources.Ref{}, fmt.Errorf("--branch %s and --ref %s disagree: give one of them", o.branch, o.ref)
	}
	return ref, nil
}

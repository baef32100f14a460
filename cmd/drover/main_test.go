package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const validFleet = `services:
  - name: web
    version: "1"
    replicas: 2
    image:
      kernel: {url: "file:///srv/vmlinuz", sha256: "` + sha + `"}
    port: 8080
    check:
      http: /healthz
`

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		content  string
		wantCode int
		want     []string // substrings of stdout+stderr
	}{
		{"valid.yaml", validFleet, 0, []string{"valid, 1 service(s)"}},
		{"empty-fleet.yaml", "services: []\n", 0, []string{"valid, 0 service(s)"}},
		{"empty.yaml", "", 1, []string{"empty.yaml:"}},
		{"unknown.yaml", strings.Replace(validFleet, "    port: 8080\n", "    port: 8080\n    ports: 1\n", 1), 1, []string{"unknown.yaml:8:5:", "ports"}},
		{"two-errors.yaml", strings.Replace(strings.Replace(validFleet, "replicas: 2", "replicas: -1", 1), "port: 8080", "port: 99999", 1), 1,
			[]string{"two-errors.yaml:4:15:", "two-errors.yaml:7:11:"}},
		{"syntax.yaml", "services:\n  - name: [web\n", 1, []string{"syntax.yaml:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write(tt.name, tt.content)
			code, stdout, stderr := runCLI(t, "validate", p)
			if code != tt.wantCode {
				t.Errorf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output does not contain %q\nstdout: %s\nstderr: %s", w, stdout, stderr)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, _, stderr := runCLI(t, "validate", filepath.Join(dir, "nope.yaml"))
		if code != 1 || !strings.Contains(stderr, "nope.yaml") {
			t.Errorf("got %d %q, want 1 naming the file", code, stderr)
		}
	})
	t.Run("too many arguments", func(t *testing.T) {
		if code, _, _ := runCLI(t, "validate", "a", "b"); code != 2 {
			t.Errorf("got %d, want 2", code)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no command", nil, nil, "Usage"},
		{"unknown command", nil, []string{"deploy"}, `unknown command "deploy"`},
		{"run without repo", nil, []string{"run"}, "--repo is required"},
		{"bad driver", nil, []string{"run", "--repo", "x", "--driver", "xen"}, `--driver "xen"`},
		{"bad interval", nil, []string{"run", "--repo", "x", "--interval", "0s"}, "--interval 0s"},
		{"bad log format", nil, []string{"plan", "--repo", "x", "--log-format", "xml"}, "--log-format"},
		// what to track, and signatures
		{"bad ref", nil, []string{"run", "--repo", "x", "--ref", "main"}, "--ref: ref \"main\": want branch:NAME"},
		{"bad semver", nil, []string{"plan", "--repo", "x", "--ref", "semver:one"}, "invalid semver range"},
		{"short commit", nil, []string{"run", "--repo", "x", "--ref", "commit:abc"}, "full 40-hex"},
		{"branch and ref disagree", nil, []string{"run", "--repo", "x", "--branch", "main", "--ref", "tag:v1"}, "--branch main and --ref tag:v1 disagree"},
		{"branch and ref from env disagree", map[string]string{"DROVER_REF": "branch:prod"}, []string{"run", "--repo", "x", "--branch", "main"}, "disagree"},
		{"verify without keys", nil, []string{"run", "--repo", "x", "--verify-signatures"}, "--verify-signatures needs --git-trusted-keys"},
		{"keys without verify", nil, []string{"run", "--repo", "x", "--ref", "commit:" + strings.Repeat("a", 40), "--git-allowed-signers", "f"}, "used only with --verify-signatures"},
		{"bad env", map[string]string{"DROVER_INTERVAL": "soon"}, []string{"run", "--repo", "x"}, "DROVER_INTERVAL"},
		{"stray argument", nil, []string{"run", "--repo", "x", "extra"}, "unexpected arguments"},
		{"fleet with capitals", nil, []string{"run", "--repo", "x", "--fleet", "Prod"}, `--fleet: fleet name "Prod": character 'P' at 1`},
		{"fleet ending in a dash", nil, []string{"plan", "--repo", "x", "--fleet", "prod-"}, `character '-' at 5`},
		{"fleet too long", nil, []string{"run", "--repo", "x", "--fleet", strings.Repeat("a", 64)}, "more than 63"},
		{"fleet from env", map[string]string{"DROVER_FLEET": "a b"}, []string{"run", "--repo", "x"}, `fleet name "a b": character ' ' at 2`},
		{"ssh without known_hosts", map[string]string{"DROVER_GIT_SSH_KEY": "/etc/drover/key"}, []string{"run", "--repo", "ssh://git@git.lan/fleet.git"}, "needs --git-known-hosts FILE"},
		{"token file on git://", map[string]string{"DROVER_GIT_TOKEN_FILE": "/etc/drover/token"}, []string{"plan", "--repo", "git://git.lan/fleet.git"}, "--git-token-file is for https:// repositories"},
		{"agent from env on https", map[string]string{"DROVER_GIT_SSH_AGENT": "true"}, []string{"run", "--repo", "https://git.lan/f.git"}, "--git-ssh-agent is for ssh://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(t, tt.args...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want %d and %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	// DROVER_REPO satisfies --repo; a flag on the command line wins over the environment.
	t.Setenv("DROVER_REPO", "/nonexistent")
	t.Setenv("DROVER_DRIVER", "xen")
	code, _, stderr := runCLI(t, "run", "--driver", "libvirt", "--interval", "-1s")
	if code != exitUsage || strings.Contains(stderr, "--repo is required") || strings.Contains(stderr, "xen") {
		t.Fatalf("got exit %d, stderr %q: want only the interval error", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "drover ") {
		t.Errorf("got %d %q", code, stdout)
	}
}

// TestRunOnceExitCodes runs `drover run --once` against real Consul, git and each driver.
func TestRunOnceExitCodes(t *testing.T) {
	for _, driver := range []string{"libvirt", "qemu"} {
		t.Run(driver, func(t *testing.T) { testRunOnceExitCodes(t, driver) })
	}
}

func testRunOnceExitCodes(t *testing.T, driver string) {
	uri := ""
	if driver == "libvirt" {
		uri = testenv.Libvirt(t)
	}
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	repo := testenv.NewRepo(t)
	state := testenv.StateDir(t)
	t.Cleanup(func() { destroyService(t, driver, uri, state, "e2e-cli") })

	common := append([]string{"--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr, "--driver", driver}, imageRootArgs(images)...)
	if uri != "" {
		common = append(common, "--libvirt-uri", uri)
	}
	args := append([]string{"run", "--once", "--listen", "", "--interval", "1s"}, common...)
	svc := testenv.Service{Name: "e2e-cli", Version: "1", Replicas: 1}
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(svc)}, "v1")
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("deploy: exit %d, want 0\n%s", code, stderr)
	}
	// Matching already: exit 0 again without change.
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("no-op: exit %d, want 0\n%s", code, stderr)
	}

	plan := append([]string{"plan"}, common...)
	if code, stdout, stderr := runCLI(t, plan...); code != 0 || !strings.Contains(stdout, "up to date") {
		t.Fatalf("plan: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}

	svc.Version, svc.Unhealthy, svc.HealthyDeadline = "2", true, 10*time.Second
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(svc)}, "v2 broken")
	if code, stdout, stderr := runCLI(t, plan...); code != 0 || !strings.Contains(stdout, "create 1") || !strings.Contains(stdout, "drain and destroy") {
		t.Fatalf("plan of v2: exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	code, _, stderr := runCLI(t, args...)
	if code != 1 || !strings.Contains(stderr, "rolled back") {
		t.Fatalf("unhealthy v2: exit %d, want 1 with a rollback message\n%s", code, stderr)
	}

	bad := append(append([]string{}, args...), "--repo", filepath.Join(t.TempDir(), "missing"), "--state-dir", testenv.StateDir(t))
	if code, _, stderr := runCLI(t, bad...); code != 1 || !strings.Contains(stderr, "missing") {
		t.Fatalf("unreachable repo: exit %d, want 1 naming it\n%s", code, stderr)
	}
}

func destroyService(t *testing.T, driver, uri, state, service string) {
	ctx := context.Background()
	hv, err := newDriver(ctx, options{driver: driver, libvirtURI: uri, stateDir: state}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer hv.Close()
	vms, _ := hv.List(ctx)
	for _, vm := range vms {
		if vm.Meta.Service == service {
			_ = hv.Destroy(ctx, vm.Name)
		}
	}
}

// imageRootArgs lets drover read the test images: file:// only works under --image-root.
func imageRootArgs(images testenv.GuestImages) []string {
	var args []string
	seen := map[string]bool{}
	for _, f := range []testenv.File{images.Kernel, images.Initrd, images.UnhealthyInitrd} {
		if dir := filepath.Dir(f.Path); !seen[dir] {
			seen[dir] = true
			args = append(args, "--image-root", dir)
		}
	}
	return args
}

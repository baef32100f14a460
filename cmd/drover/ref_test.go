package main

import (
	"strings"
	"testing"
)

func TestRefFlags(t *testing.T) {
	sha := strings.Repeat("a", 40)
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"bad ref", nil, []string{"run", "--repo", "x", "--ref", "main"}, "--ref: ref \"main\": want branch:NAME"},
		{"bad semver", nil, []string{"plan", "--repo", "x", "--ref", "semver:one"}, "invalid semver range"},
		{"short commit", nil, []string{"run", "--repo", "x", "--ref", "commit:abc"}, "full 40-hex"},
		{"branch and ref disagree", nil, []string{"run", "--repo", "x", "--branch", "main", "--ref", "tag:v1"}, "--branch main and --ref tag:v1 disagree"},
		{"branch and ref from env disagree", map[string]string{"DROVER_REF": "branch:prod"}, []string{"run", "--repo", "x", "--branch", "main"}, "disagree"},
		{"verify without keys", nil, []string{"run", "--repo", "x", "--verify-signatures"}, "--verify-signatures needs --git-trusted-keys"},
		{"keys without verify", nil, []string{"run", "--repo", "x", "--ref", "commit:" + sha, "--git-allowed-signers", "f"}, "used only with --verify-signatures"},
	} {
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

// A branch given either way keeps the fleet's identity it had before --ref; another
// kind of ref is another fleet.
func TestFleetNameOfRef(t *testing.T) {
	base := options{repo: "/srv/fleet", path: "fleet.yaml"}.fleetName()
	for _, o := range []options{
		{repo: "/srv/fleet", path: "fleet.yaml", branch: "main"},
		{repo: "/srv/fleet", path: "fleet.yaml", ref: "branch:main"},
		{repo: "/srv/fleet", path: "fleet.yaml", ref: "branch:main", branch: "main"},
	} {
		if got := o.fleetName(); got != base {
			t.Errorf("fleetName(branch %q ref %q) = %s, want %s", o.branch, o.ref, got, base)
		}
	}
	if got := (options{repo: "/srv/fleet", path: "fleet.yaml", ref: "tag:v1"}).fleetName(); got == base {
		t.Errorf("fleetName(tag:v1) = the branch's %s", got)
	}
}

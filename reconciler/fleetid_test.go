package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestFleetID(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	type fleet struct{ repo, branch, path string }
	base := fleet{"https://git.lan/ops/fleet.git", "main", "fleet.yaml"}
	tests := []struct {
		name     string
		a, b     fleet
		wantSame bool
	}{
		{"identical", base, base, true},
		{"trailing slash", base, fleet{"https://git.lan/ops/fleet.git/", "main", "fleet.yaml"}, true},
		{"dot path", base, fleet{"https://git.lan/ops/fleet.git", "main", "./fleet.yaml"}, true},
		{"relative and absolute local path", fleet{"repo", "main", "fleet.yaml"}, fleet{filepath.Join(wd, "repo"), "main", "fleet.yaml"}, true},
		{"other branch", base, fleet{"https://git.lan/ops/fleet.git", "prod", "fleet.yaml"}, false},
		{"other path", base, fleet{"https://git.lan/ops/fleet.git", "main", "fleets/web"}, false},
		{"other repo", base, fleet{"https://git.lan/ops/other.git", "main", "fleet.yaml"}, false},
		{"scp syntax is not a local path", fleet{"git@git.lan:ops/fleet.git", "main", "fleet.yaml"}, fleet{filepath.Join(wd, "git@git.lan:ops/fleet.git"), "main", "fleet.yaml"}, false},
		// The separator keeps parts from sliding into each other.
		{"parts do not run together", base, fleet{"https://git.lan/ops/fleet.gitm", "ain", "fleet.yaml"}, false},
		// Rotating a credential keeps the fleet (and its VMs and lock).
		{"password rotated", fleet{"https://ci:old-token@git.lan/ops/fleet.git", "main", "fleet.yaml"}, fleet{"https://ci:new-token@git.lan/ops/fleet.git", "main", "fleet.yaml"}, true},
		{"credential added", base, fleet{"https://ci:s3cret@git.lan/ops/fleet.git", "main", "fleet.yaml"}, true},
		{"token as user name", base, fleet{"https://ghp_abc123@git.lan/ops/fleet.git", "main", "fleet.yaml"}, true},
		{"other host with same credential", fleet{"https://ci:t@git.lan/ops/fleet.git", "main", "fleet.yaml"}, fleet{"https://ci:t@git.example/ops/fleet.git", "main", "fleet.yaml"}, false},
	}
	hex12 := regexp.MustCompile(`^[0-9a-f]{12}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := FleetID(tt.a.repo, tt.a.branch, tt.a.path), FleetID(tt.b.repo, tt.b.branch, tt.b.path)
			if !hex12.MatchString(a) {
				t.Errorf("FleetID = %q: want 12 hex digits", a)
			}
			if (a == b) != tt.wantSame {
				t.Errorf("FleetID(%+v) = %s, FleetID(%+v) = %s: want same %v, got %v", tt.a, a, tt.b, b, tt.wantSame, a == b)
			}
		})
	}
	// Fleets deployed before credentials were left out keep their IDs: nothing about
	// a URL without credentials changed.
	for repo, want := range map[string]string{
		"https://git.lan/ops/fleet.git":   FleetID("https://git.lan/ops/fleet.git/", "main", "fleet.yaml"),
		"ssh://git@git.lan/ops/fleet.git": hashParts("ssh://git@git.lan/ops/fleet.git", "main", "fleet.yaml"),
	} {
		if got := FleetID(repo, "main", "fleet.yaml"); got != want {
			t.Errorf("FleetID(%s) = %s, want %s (as before)", repo, got, want)
		}
	}
	if got := LeaderKey("prod"); got != "drover/leader/prod" {
		t.Errorf("LeaderKey(prod) = %s, want drover/leader/prod", got)
	}
}

// hashParts is the ID formula as it was before credentials were left out.
func hashParts(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

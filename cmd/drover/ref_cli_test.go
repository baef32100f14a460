package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-dev/drover/testenv"
)

// The flags reach the source: run --once over a signed commit and a tag, and a
// refusal of an unsigned commit naming it, through the real CLI, Consul and git.
// The fleet has no services, so no VM boots.
func TestRunVerifiesSignatures(t *testing.T) {
	consul := testenv.Consul(t)
	signer := testenv.NewSSHSigner(t, "release@drover.invalid")
	allowed := filepath.Join(t.TempDir(), "allowed_signers")
	if err := os.WriteFile(allowed, []byte(signer.Public), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := testenv.NewRepo(t)
	common := []string{"--repo", repo.URL(), "--state-dir", testenv.StateDir(t), "--consul", consul.Addr, "--driver", "qemu",
		"--verify-signatures", "--git-allowed-signers", allowed, "--leader-lock=false"}
	once := append([]string{"run", "--once", "--listen", "", "--interval", "1s"}, common...)

	signed := repo.CommitSigned(t, signer, map[string]string{"fleet.yaml": "services: []\n"}, "signed")
	if code, _, stderr := runCLI(t, once...); code != 0 || !strings.Contains(stderr, signed) {
		t.Fatalf("signed commit: exit %d, want 0 naming %s\n%s", code, signed, stderr)
	}
	repo.Tag(t, "v1.0.0", signed, true, signer)

	unsigned := repo.CommitSigned(t, nil, map[string]string{"fleet.yaml": "services: []\n# unsigned\n"}, "unsigned")
	code, _, stderr := runCLI(t, once...)
	if code != exitFail || !strings.Contains(stderr, unsigned) || !strings.Contains(stderr, "unsigned") {
		t.Fatalf("unsigned commit: exit %d, want %d naming %s and why\n%s", code, exitFail, unsigned, stderr)
	}

	// The signed tag still deploys while the branch head is refused.
	tagged := append(append([]string{}, once...), "--ref", "semver:^1")
	if code, _, stderr := runCLI(t, tagged...); code != 0 || !strings.Contains(stderr, "tag=v1.0.0") || !strings.Contains(stderr, "ref=semver:^1") {
		t.Fatalf("semver ref: exit %d, want 0 logging ref and tag\n%s", code, stderr)
	}
}

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGitServersCountPacks drives each git server with the real git client: a ref
// listing sends no pack, a clone one, and the server's refusals hold (no forced
// command escape, no anonymous https).
func TestGitServersCountPacks(t *testing.T) {
	root := t.TempDir()
	repo, err := InitRepo(filepath.Join(root, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "first")
	key := NewSSHKey(t, "")
	sshd := ServeSSH(t, root, key)
	daemon := ServeGitDaemon(t, root)
	https := ServeGitHTTP(t, root, GitHTTPOptions{User: "u", Password: "pw-abcdef", TLS: true})
	knownHosts := WriteKnownHosts(t, sshd.KnownHostsLine("ssh-ed25519"))
	gitEnv := append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_SSH_COMMAND=ssh -F none -i "+key.PrivateFile+" -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile="+knownHosts+" -o StrictHostKeyChecking=yes",
		"GIT_SSL_CAINFO="+https.CA.CertFile)
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Env = gitEnv
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tt := range []struct {
		name   string
		url    string
		server interface {
			Fetches() int
			Transfers() []Transfer
		}
	}{
		{"sshd", sshd.RepoURL("fleet"), sshd},
		{"git daemon", daemon.RepoURL("fleet"), daemon},
		{"https", https.AuthRepoURL("fleet"), https},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := git("ls-remote", tt.url); err != nil || !strings.Contains(out, "refs/heads/main") {
				t.Fatalf("git ls-remote: %v\n%s", err, out)
			}
			if got := tt.server.Fetches(); got != 0 {
				t.Errorf("after a ref listing the server counts %d packs, want 0", got)
			}
			if out, err := git("clone", "-q", tt.url, filepath.Join(t.TempDir(), "clone")); err != nil {
				t.Fatalf("git clone: %v\n%s", err, out)
			}
			if got := tt.server.Fetches(); got != 1 {
				t.Errorf("after a clone the server counts %d packs, want 1", got)
			}
			// A commit holds a commit, a tree and a blob.
			if got := tt.server.Transfers(); len(got) != 1 || got[0].Objects != 3 || got[0].Bytes < 32 {
				t.Errorf("transfers = %+v, want one pack of 3 objects", got)
			}
		})
	}
	t.Run("sshd runs upload-pack only", func(t *testing.T) {
		out, err := exec.Command("ssh", "-F", "none", "-i", key.PrivateFile, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
			"-o", "UserKnownHostsFile="+knownHosts, "-p", strings.Split(sshd.Addr, ":")[1], "127.0.0.1", "id").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "git-upload-pack only") {
			t.Errorf("ssh … id: %v, want a refusal\n%s", err, out)
		}
		if out, err := git("push", sshd.RepoURL("fleet"), "HEAD:refs/heads/x"); err == nil {
			t.Errorf("git push over ssh succeeded:\n%s", out)
		}
	})
	t.Run("https wants the password", func(t *testing.T) {
		if out, err := git("ls-remote", https.RepoURL("fleet")); err == nil {
			t.Errorf("anonymous git ls-remote succeeded:\n%s", out)
		}
	})
}

package sources

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/testenv"
)

func TestSplitCredentials(t *testing.T) {
	tests := []struct {
		raw     string
		url     string
		auth    *githttp.BasicAuth
		display string
		secrets []string
	}{
		{"https://drover:t0ken-abc@git.lan/fleet.git", "https://git.lan/fleet.git",
			&githttp.BasicAuth{Username: "drover", Password: "t0ken-abc"}, "https://drover:xxxxx@git.lan/fleet.git", []string{"t0ken-abc"}},
		{"https://ghp_T0KEN@git.lan/fleet.git", "https://git.lan/fleet.git",
			&githttp.BasicAuth{Username: "ghp_T0KEN"}, "https://xxxxx@git.lan/fleet.git", []string{"ghp_T0KEN"}},
		{"http://u:p%40ss%2Fword@127.0.0.1:8080/r", "http://127.0.0.1:8080/r",
			&githttp.BasicAuth{Username: "u", Password: "p@ss/word"}, "http://u:xxxxx@127.0.0.1:8080/r", []string{"p@ss/word", "p%40ss%2Fword"}},
		{"https://git.lan/fleet.git", "https://git.lan/fleet.git", nil, "https://git.lan/fleet.git", nil},
		{"ssh://git@git.lan/fleet.git", "ssh://git@git.lan/fleet.git", nil, "ssh://git@git.lan/fleet.git", nil},
		{"git://git.lan/fleet.git", "git://git.lan/fleet.git", nil, "git://git.lan/fleet.git", nil},
		{"/srv/fleet", "/srv/fleet", nil, "/srv/fleet", nil},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got := splitCredentials(tt.raw)
			var auth *githttp.BasicAuth
			if got.auth != nil {
				auth = got.auth.(*githttp.BasicAuth)
			}
			if got.url != tt.url || !reflect.DeepEqual(auth, tt.auth) || got.display != tt.display || !reflect.DeepEqual(got.secrets, tt.secrets) {
				t.Errorf("splitCredentials(%q) = url %q auth %+v display %q secrets %q;\nwant url %q auth %+v display %q secrets %q",
					tt.raw, got.url, auth, got.display, got.secrets, tt.url, tt.auth, tt.display, tt.secrets)
			}
		})
	}
}

// TestNewGitAuthConfig: authentication that does not fit the remote, or files that
// cannot be used, are refused at start with the flag or file named.
func TestNewGitAuthConfig(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := file("token", "t0ken-abc\n")
	notKey := file("not-a-key", "hello\n")
	notCA := file("not-a-ca", "hello\n")
	knownHosts := file("known_hosts", "")
	const sshURL, httpsURL = "ssh://git@git.lan/fleet.git", "https://git.lan/fleet.git"
	for _, tt := range []struct {
		name, url string
		auth      GitAuth
		want      string
	}{
		{"ssh without a key", sshURL, GitAuth{KnownHostsFile: knownHosts}, "needs --git-ssh-key FILE (a deploy key) or --git-ssh-agent"},
		{"ssh without known_hosts", sshURL, GitAuth{SSHKeyFile: notKey}, "needs --git-known-hosts FILE"},
		{"scp-like ssh without known_hosts", "git@git.lan:fleet.git", GitAuth{SSHKeyFile: notKey}, "needs --git-known-hosts FILE"},
		{"key and agent", sshURL, GitAuth{SSHKeyFile: notKey, SSHAgent: true, KnownHostsFile: knownHosts}, "give one"},
		{"passphrase without key", sshURL, GitAuth{SSHAgent: true, SSHKeyPassphraseFile: token, KnownHostsFile: knownHosts}, "needs --git-ssh-key"},
		{"not a key", sshURL, GitAuth{SSHKeyFile: notKey, KnownHostsFile: knownHosts}, "--git-ssh-key " + notKey + ": not a private key"},
		{"missing known_hosts", sshURL, GitAuth{SSHKeyFile: notKey, KnownHostsFile: filepath.Join(dir, "nope")}, "--git-known-hosts"},
		{"agent without SSH_AUTH_SOCK", sshURL, GitAuth{SSHAgent: true, KnownHostsFile: knownHosts}, ""},
		{"ssh flags on https", httpsURL, GitAuth{SSHKeyFile: notKey}, "--git-ssh-key is for ssh:// repositories"},
		{"http flags on ssh", sshURL, GitAuth{SSHAgent: true, KnownHostsFile: knownHosts, TokenFile: token}, "--git-token-file is for https:// repositories"},
		{"auth on git://", "git://git.lan/fleet.git", GitAuth{Username: "u", PasswordFile: token}, "--git-username is for https:// repositories"},
		{"password without user", httpsURL, GitAuth{PasswordFile: token}, "--git-password-file needs --git-username"},
		{"user alone", httpsURL, GitAuth{Username: "u"}, "--git-username needs --git-password-file or --git-token-file"},
		{"password and token", httpsURL, GitAuth{Username: "u", PasswordFile: token, TokenFile: token}, "give one"},
		{"URL credentials and a token file", "https://u:pw-in-url@git.lan/f.git", GitAuth{TokenFile: token}, "carries credentials"},
		{"missing token file", httpsURL, GitAuth{TokenFile: filepath.Join(dir, "nope")}, filepath.Join(dir, "nope")},
		{"empty token file", httpsURL, GitAuth{TokenFile: file("empty", "\n")}, "empty"},
		{"CA on http", "http://git.lan/f.git", GitAuth{CAFile: notCA}, "--git-ca-file is for https://"},
		{"not a CA", httpsURL, GitAuth{CAFile: notCA}, "--git-ca-file " + notCA + ": no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewGit(GitConfig{URL: tt.url, Auth: tt.auth}, nil)
			if tt.want == "" {
				// The agent is reached at the first call, not at start.
				if err != nil {
					t.Errorf("NewGit = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewGit = %v\nwant an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw-in-url") {
				t.Errorf("NewGit error %q shows the URL's password", err)
			}
		})
	}
}

// TestNewGitEncryptedKey: an encrypted deploy key needs its passphrase, and a wrong
// one is named as such; the passphrase joins the secrets to mask.
func TestNewGitEncryptedKey(t *testing.T) {
	key := testenv.NewSSHKey(t, "right-phrase-42")
	knownHosts := testenv.WriteKnownHosts(t)
	dir := t.TempDir()
	pass := func(s string) string {
		p := filepath.Join(dir, s)
		if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	url := "ssh://git@git.lan/fleet.git"
	if _, err := NewGit(GitConfig{URL: url, Auth: GitAuth{SSHKeyFile: key.PrivateFile, KnownHostsFile: knownHosts}}, nil); err == nil ||
		!strings.Contains(err.Error(), "the key is encrypted: give its passphrase with --git-ssh-key-passphrase-file") {
		t.Errorf("NewGit without the passphrase = %v", err)
	}
	if _, err := NewGit(GitConfig{URL: url, Auth: GitAuth{SSHKeyFile: key.PrivateFile, SSHKeyPassphraseFile: pass("wrong-phrase-13"), KnownHostsFile: knownHosts}}, nil); err == nil ||
		!strings.Contains(err.Error(), "decrypt with the passphrase in") || strings.Contains(err.Error(), "wrong-phrase-13\n") {
		t.Errorf("NewGit with a wrong passphrase = %v", err)
	}
	set := redact.NewSet()
	if _, err := NewGit(GitConfig{URL: url, Secrets: set, Auth: GitAuth{SSHKeyFile: key.PrivateFile, SSHKeyPassphraseFile: pass("right-phrase-42"), KnownHostsFile: knownHosts}}, nil); err != nil {
		t.Errorf("NewGit with the passphrase = %v", err)
	}
	if got := set.List(); len(got) != 1 || got[0] != "right-phrase-42" {
		t.Errorf("secrets = %q, want the passphrase", got)
	}
}

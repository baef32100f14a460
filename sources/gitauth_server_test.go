package sources

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/testenv"
)

// authRepo is a fleet repository in root/fleet, served by the tests' real servers.
type authRepo struct {
	root string
	repo *testenv.Repo
}

func newAuthRepo(t *testing.T) authRepo {
	t.Helper()
	root := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(root, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	return authRepo{root: root, repo: repo}
}

// commit makes a new valid fleet commit (each with its own content).
func (r authRepo) commit(t *testing.T, msg string) string {
	t.Helper()
	return r.repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n# " + msg + "\n"}, msg)
}

func secretFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	writeSecret(t, p, content)
	return p
}

func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	// Written beside and renamed, as a secret manager rotates a file.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// readCommit reads the source and wants commit.
func readCommit(t *testing.T, g *Git, want string) {
	t.Helper()
	if rev := readAt(t, g); rev.Commit != want {
		t.Fatalf("Read = commit %s, want %s", rev.Commit, want)
	}
}

func newTestGit(t *testing.T, cfg GitConfig) *Git {
	t.Helper()
	cfg.Dir = filepath.Join(t.TempDir(), "clone")
	g, err := NewGit(cfg, nil)
	if err != nil {
		t.Fatalf("NewGit: %v", err)
	}
	return g
}

// fetchCounter is what every test server counts.
type fetchCounter interface{ Fetches() int }

// TestGitTransportsAndAuth drives the source end to end over each transport and
// authentication method, against real servers: git daemon, git http-backend over TLS
// with basic auth, OpenSSH's sshd with a deploy key.
func TestGitTransportsAndAuth(t *testing.T) {
	r := newAuthRepo(t)
	first := r.commit(t, "first")
	const password = "pw-5e8f1a2b9c"
	daemon := testenv.ServeGitDaemon(t, r.root)
	https := testenv.ServeGitHTTP(t, r.root, testenv.GitHTTPOptions{User: "drover", Password: password, TLS: true})
	token := testenv.ServeGitHTTP(t, r.root, testenv.GitHTTPOptions{User: DefaultTokenUser, Password: "tok-0d1e2f3a4b", TLS: true})
	deploy := testenv.NewSSHKey(t, "")
	encrypted := testenv.NewSSHKey(t, "key-passphrase-91")
	agentKey := testenv.NewSSHKey(t, "")
	sshd := testenv.ServeSSH(t, r.root, deploy, encrypted, agentKey)
	knownHosts := testenv.WriteKnownHosts(t, sshd.KnownHostsLine("ssh-ed25519"), sshd.KnownHostsLine("ecdsa-sha2-nistp256"))

	for _, tt := range []struct {
		name   string
		server fetchCounter
		cfg    GitConfig
		agent  *testenv.SSHKey
	}{
		{"git daemon", daemon, GitConfig{URL: daemon.RepoURL("fleet")}, nil},
		{"https password file and CA", https, GitConfig{URL: https.RepoURL("fleet"),
			Auth: GitAuth{Username: "drover", PasswordFile: secretFile(t, password), CAFile: https.CA.CertFile}}, nil},
		{"https token file", token, GitConfig{URL: token.RepoURL("fleet"),
			Auth: GitAuth{TokenFile: secretFile(t, "tok-0d1e2f3a4b"), CAFile: token.CA.CertFile}}, nil},
		{"https credentials in the URL", https, GitConfig{URL: https.AuthRepoURL("fleet"), Auth: GitAuth{CAFile: https.CA.CertFile}}, nil},
		{"ssh deploy key", sshd, GitConfig{URL: sshd.RepoURL("fleet"),
			Auth: GitAuth{SSHKeyFile: deploy.PrivateFile, KnownHostsFile: knownHosts}}, nil},
		{"ssh encrypted key", sshd, GitConfig{URL: sshd.RepoURL("fleet"),
			Auth: GitAuth{SSHKeyFile: encrypted.PrivateFile, SSHKeyPassphraseFile: secretFile(t, "key-passphrase-91"), KnownHostsFile: knownHosts}}, nil},
		{"ssh agent", sshd, GitConfig{URL: sshd.RepoURL("fleet"), Auth: GitAuth{SSHAgent: true, KnownHostsFile: knownHosts}}, &agentKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.agent != nil {
				t.Setenv("SSH_AUTH_SOCK", testenv.StartSSHAgent(t, *tt.agent))
			} else {
				// Never the agent unless asked: an agent holding the deploy key
				// must not make a keyless configuration work.
				t.Setenv("SSH_AUTH_SOCK", "")
			}
			before := tt.server.Fetches()
			g := newTestGit(t, tt.cfg)
			readCommit(t, g, first)
			if got := tt.server.Fetches() - before; got != 1 {
				t.Errorf("the server sent %d packs for the first read, want 1", got)
			}
		})
	}

	t.Run("https without the CA", func(t *testing.T) {
		g := newTestGit(t, GitConfig{URL: https.RepoURL("fleet"), Auth: GitAuth{Username: "drover", PasswordFile: secretFile(t, password)}})
		_, err := g.Read(context.Background())
		if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("Read without --git-ca-file = %v, want ErrFetch naming the certificate", err)
		}
	})
}

// TestGitHostKeyAlgorithms: a server with ed25519 and ECDSA host keys, listed in
// known_hosts by one of them only, is trusted: Drover asks for the listed type. Go's
// SSH client prefers ECDSA, so asking for everything makes an ed25519-only entry
// look changed.
func TestGitHostKeyAlgorithms(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	r := newAuthRepo(t)
	first := r.commit(t, "first")
	deploy := testenv.NewSSHKey(t, "")
	sshd := testenv.ServeSSH(t, r.root, deploy)
	for _, typ := range sshd.HostKeyTypes() {
		t.Run(typ, func(t *testing.T) {
			g := newTestGit(t, GitConfig{URL: sshd.RepoURL("fleet"),
				Auth: GitAuth{SSHKeyFile: deploy.PrivateFile, KnownHostsFile: testenv.WriteKnownHosts(t, sshd.KnownHostsLine(typ))}})
			readCommit(t, g, first)
		})
	}
}

// TestGitRefusals: a good read, then the credentials or the host's key go wrong and a
// new commit is pushed. Each refusal is a clear error of its own, and the source keeps
// the last good revision.
func TestGitRefusals(t *testing.T) {
	r := newAuthRepo(t)
	const password = "pw-1b2c3d4e5f"
	https := testenv.ServeGitHTTP(t, r.root, testenv.GitHTTPOptions{User: "drover", Password: password, TLS: true})
	deploy := testenv.NewSSHKey(t, "")
	stranger := testenv.NewSSHKey(t, "")
	other := testenv.NewSSHKey(t, "") // stands in for another server's host key
	sshd := testenv.ServeSSH(t, r.root, deploy)
	good := []string{sshd.KnownHostsLine("ssh-ed25519")}
	// What go-git falls back to when left to itself: an agent holding the deploy key,
	// and ~/.ssh/known_hosts and SSH_KNOWN_HOSTS trusting the server. Neither may
	// rescue a refused key or host key.
	t.Setenv("SSH_AUTH_SOCK", testenv.StartSSHAgent(t, deploy))
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("SSH_KNOWN_HOSTS", testenv.WriteKnownHosts(t, good...))
	writeSecret(t, filepath.Join(home, ".ssh", "known_hosts"), strings.Join(good, "\n"))
	otherKey := strings.Join(strings.Fields(other.Public)[:2], " ")
	strangerKey, err := os.ReadFile(stranger.PrivateFile)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name  string
		https bool
		// spoil changes the files the source reads at each call.
		spoil func(t *testing.T, secret, keyFile, knownHosts string)
		want  error
		// in the error, beside the URL's host
		mentions []string
	}{
		{"wrong password", true, func(t *testing.T, secret, _, _ string) { writeSecret(t, secret, "pw-wrong-7a6b5c") },
			ErrAuth, []string{`user "drover"`, "password in"}},
		{"wrong key", false, func(t *testing.T, _, keyFile, _ string) { writeSecret(t, keyFile, string(strangerKey)) },
			ErrAuth, []string{"key in"}},
		{"unknown host key", false, func(t *testing.T, _, _, kh string) {
			writeSecret(t, kh, "[127.0.0.1]:1 "+otherKey)
		}, ErrHostKeyUnknown, []string{"SHA256:", "ssh-keyscan -p"}},
		{"changed host key", false, func(t *testing.T, _, _, kh string) {
			writeSecret(t, kh, sshd.KnownHostsPattern()+" "+otherKey)
		}, ErrHostKeyChanged, []string{"SHA256:", "line 1", "someone is in the middle"}},
		{"revoked host key", false, func(t *testing.T, _, _, kh string) {
			writeSecret(t, kh, strings.Join(good, "\n")+"\n@revoked * "+strings.TrimPrefix(good[0], sshd.KnownHostsPattern()+" "))
		}, ErrHostKeyRevoked, []string{"SHA256:", "@revoked"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			secret := secretFile(t, password)
			keyFile := filepath.Join(t.TempDir(), "key")
			data, err := os.ReadFile(deploy.PrivateFile)
			if err != nil {
				t.Fatal(err)
			}
			writeSecret(t, keyFile, string(data))
			knownHosts := testenv.WriteKnownHosts(t, good...)
			cfg := GitConfig{URL: sshd.RepoURL("fleet"), Auth: GitAuth{SSHKeyFile: keyFile, KnownHostsFile: knownHosts}}
			var server fetchCounter = sshd
			if tt.https {
				cfg = GitConfig{URL: https.RepoURL("fleet"), Auth: GitAuth{Username: "drover", PasswordFile: secret, CAFile: https.CA.CertFile}}
				server = https
			}
			first := r.commit(t, tt.name+" good")
			g := newTestGit(t, cfg)
			readCommit(t, g, first)

			tt.spoil(t, secret, keyFile, knownHosts)
			r.commit(t, tt.name+" unreachable")
			before := server.Fetches()
			rev, err := g.Read(context.Background())
			if !errors.Is(err, ErrFetch) || !errors.Is(err, tt.want) {
				t.Fatalf("Read = %v, want ErrFetch and %v", err, tt.want)
			}
			t.Logf("refused: %v", err)
			for _, m := range append(tt.mentions, "127.0.0.1") {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "pw-wrong") || strings.Contains(err.Error(), password) {
				t.Errorf("error %q shows a password", err)
			}
			if rev.Commit != "" {
				t.Errorf("Read returned revision %s beside the error", rev.Commit)
			}
			if last, ok := g.Last(); !ok || last.Commit != first {
				t.Errorf("Last = %s, %v; want the last good %s", last.Commit, ok, first)
			}
			if got := server.Fetches() - before; got != 0 {
				t.Errorf("the server sent %d packs to a refused source", got)
			}
		})
	}
}

// TestGitTokenRotation: the server's token changes, and so does the file; the same
// source, not restarted, fetches with the new one.
func TestGitTokenRotation(t *testing.T) {
	r := newAuthRepo(t)
	first := r.commit(t, "first")
	srv := testenv.ServeGitHTTP(t, r.root, testenv.GitHTTPOptions{User: "drover", Password: "token-old-1111", TLS: true})
	file := secretFile(t, "token-old-1111")
	g := newTestGit(t, GitConfig{URL: srv.RepoURL("fleet"), Auth: GitAuth{Username: "drover", TokenFile: file, CAFile: srv.CA.CertFile}})
	readCommit(t, g, first)

	srv.SetPassword("drover", "token-new-2222")
	second := r.commit(t, "second")
	if _, err := g.Read(context.Background()); !errors.Is(err, ErrAuth) {
		t.Fatalf("Read with the revoked token = %v, want ErrAuth", err)
	}
	writeSecret(t, file, "token-new-2222")
	readCommit(t, g, second)
}

// TestGitCredentialsRedacted: a server that quotes the credentials it was sent in
// its refusal, a wrong token read from a file, a passphrase: none reaches the error,
// nor a log line written through the redacting handler with the source's secrets.
func TestGitCredentialsRedacted(t *testing.T) {
	r := newAuthRepo(t)
	r.commit(t, "first")
	srv := testenv.ServeGitHTTP(t, r.root, testenv.GitHTTPOptions{User: "drover", Password: "right-token-77", TLS: true, EchoCredentials: true})
	const wrong = "wrong-token-3f9e8d7c"
	secrets := redact.NewSet()
	var logs bytes.Buffer
	log := slog.New(redact.SetHandler(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}), secrets))
	g, err := NewGit(GitConfig{URL: srv.RepoURL("fleet"), Dir: filepath.Join(t.TempDir(), "clone"), Secrets: secrets,
		Auth: GitAuth{Username: "drover", TokenFile: secretFile(t, wrong), CAFile: srv.CA.CertFile}}, log)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Read(context.Background())
	if err == nil {
		t.Fatal("Read with a wrong token succeeded")
	}
	if !strings.Contains(err.Error(), "with password "+redact.Mask) {
		t.Errorf("want the server's quote of the token masked in the error, got %q", err)
	}
	log.Error("fetch failed", "err", err, "detail", "the server said "+wrong)
	for what, text := range map[string]string{"error": err.Error(), "log": logs.String()} {
		if strings.Contains(text, wrong) {
			t.Errorf("the %s shows the token:\n%s", what, text)
		}
	}
	if !slicesContains(secrets.List(), wrong) {
		t.Errorf("the token read from the file is not in the secrets set %q", secrets.List())
	}
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Signer signs commits and tags with the real GnuPG or ssh-keygen, through git.
type Signer struct {
	// Format is git's gpg.format: "openpgp" or "ssh".
	Format string
	// ID names the key as a verifier reports it: the OpenPGP fingerprint, or the SSH
	// key's SHA256 fingerprint.
	ID string
	// Public is what a verifier trusts: an armored OpenPGP public key, or an
	// allowed_signers line for the SSH key in namespace git.
	Public string

	signingKey string   // git's user.signingkey
	env        []string // GNUPGHOME for GnuPG
}

// NewGPGSigner makes an ed25519 OpenPGP key without a passphrase in a GNUPGHOME of
// the test's own, whose gpg-agent is stopped when the test ends. It skips the test
// (fails it in CI) when gpg is not installed.
func NewGPGSigner(t testing.TB, email string) *Signer {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		Unavailable(t, "gpg is not installed (Debian package gnupg): %v", err)
	}
	// gpg-agent's socket path must be short: not under a long t.TempDir.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatalf("gnupg home: %v", err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		kill := exec.Command("gpgconf", "--kill", "gpg-agent")
		kill.Env = append(os.Environ(), env...)
		_ = kill.Run()
		os.RemoveAll(home)
	})
	params := "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\nName-Real: Drover Test\nName-Email: " + email + "\nExpire-Date: 0\n%commit\n"
	run := func(stdin string, args ...string) string {
		cmd := exec.Command("gpg", append([]string{"--batch", "--no-tty", "--quiet"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("gpg %s: %v: %s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	run(params, "--gen-key")
	var fpr string
	for _, line := range strings.Split(run("", "--with-colons", "--list-secret-keys", email), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatalf("gpg: no fingerprint for the key of %s", email)
	}
	return &Signer{Format: "openpgp", ID: fpr, Public: run("", "--armor", "--export", fpr), signingKey: fpr, env: env}
}

// NewSSHSigner makes an ed25519 SSH key without a passphrase with ssh-keygen. It skips
// the test (fails it in CI) when ssh-keygen is not installed.
func NewSSHSigner(t testing.TB, email string) *Signer {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		Unavailable(t, "ssh-keygen is not installed (Debian package openssh-client): %v", err)
	}
	key := filepath.Join(t.TempDir(), "signing_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub").Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	fields := strings.Fields(string(out)) // 256 SHA256:... comment (ED25519)
	if len(fields) < 2 {
		t.Fatalf("ssh-keygen -l: %q", out)
	}
	keyFields := strings.Fields(string(pub))
	return &Signer{
		Format:     "ssh",
		ID:         fields[1],
		Public:     email + ` namespaces="git" ` + keyFields[0] + " " + keyFields[1] + "\n",
		signingKey: key,
	}
}

// signArgs are git's options to sign with s; none for a nil s.
func (s *Signer) signArgs() ([]string, []string) {
	if s == nil {
		return nil, nil
	}
	return []string{"-c", "gpg.format=" + s.Format, "-c", "user.signingkey=" + s.signingKey}, s.env
}

// CommitSigned is Commit through the git CLI, signed by s (unsigned when s is nil).
func (r *Repo) CommitSigned(t testing.TB, s *Signer, files map[string]string, msg string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := checkRepoPath(name); err != nil {
			t.Fatal(err)
		}
		full := filepath.Join(r.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, r.Dir, nil, "add", "-A")
	args, env := s.signArgs()
	commit := []string{"commit", "-q", "--allow-empty", "-m", msg}
	if s != nil {
		commit = append(commit, "-S")
	}
	Git(t, r.Dir, env, append(args, commit...)...)
	return Git(t, r.Dir, nil, "rev-parse", "HEAD")
}

// Tag points tag name at commit, moving it if it exists: annotated and signed by s,
// annotated and unsigned when s is nil and annotated is set, else lightweight.
func (r *Repo) Tag(t testing.TB, name, commit string, annotated bool, s *Signer) {
	t.Helper()
	args, env := s.signArgs()
	tag := []string{"tag", "-f"}
	switch {
	case s != nil:
		tag = append(tag, "-s", "-m", "release "+name)
	case annotated:
		tag = append(tag, "-a", "-m", "release "+name)
	}
	Git(t, r.Dir, env, append(append(args, tag...), name, commit)...)
}

// ForgeCommit writes a copy of commit with another message, keeping its signature,
// so that the signature no longer matches what it signs; it returns the copy's SHA,
// which the branch now points at.
func (r *Repo) ForgeCommit(t testing.TB, commit, msg string) string {
	t.Helper()
	raw := Git(t, r.Dir, nil, "cat-file", "commit", commit)
	head, _, ok := strings.Cut(raw, "\n\n")
	if !ok {
		t.Fatalf("commit %s has no message", commit)
	}
	forged, err := runGit(t, r.Dir, nil, []byte(head+"\n\n"+msg+"\n"), "hash-object", "-t", "commit", "-w", "--stdin")
	if err != nil {
		t.Fatalf("forge commit: %v", err)
	}
	Git(t, r.Dir, nil, "update-ref", "HEAD", forged)
	return forged
}

// KeyFile is the private key file of an SSH signer, for `ssh-keygen -Y sign`; empty
// for OpenPGP.
func (s *Signer) KeyFile() string {
	if s.Format != "ssh" {
		return ""
	}
	return s.signingKey
}

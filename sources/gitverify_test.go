package sources

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-dev/drover/testenv"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Each kind of refusal, for both kinds of signature: the error names the commit, the
// signer's key and why, and the last good revision stays what Last reports.
func TestGitVerifySignatures(t *testing.T) {
	requireGit(t)
	for _, format := range []string{"openpgp", "ssh"} {
		t.Run(format, func(t *testing.T) {
			newSigner := testenv.NewGPGSigner
			if format == "ssh" {
				newSigner = testenv.NewSSHSigner
			}
			trusted := newSigner(t, "release@drover.invalid")
			stranger := newSigner(t, "stranger@drover.invalid")
			cfg := GitConfig{VerifySignatures: true}
			if format == "ssh" {
				cfg.AllowedSigners = writeFile(t, "allowed_signers", trusted.Public)
			} else {
				cfg.TrustedKeys = writeFile(t, "trusted.asc", trusted.Public)
			}
			repo := testenv.NewRepo(t)
			cfg.URL = repo.URL()
			good := repo.CommitSigned(t, trusted, fleetWith("good"), "good")
			g := newGit(t, cfg)
			if rev := readAt(t, g); rev.Commit != good {
				t.Fatalf("Read = %s, want the signed %s", rev.Commit, good)
			}

			for _, tt := range []struct {
				name   string
				commit func() string
				reason error
				signer string
			}{
				{"unsigned", func() string { return repo.CommitSigned(t, nil, fleetWith("bad"), "unsigned") }, ErrUnsigned, ""},
				{"wrongly signed", func() string {
					return repo.ForgeCommit(t, repo.CommitSigned(t, trusted, fleetWith("bad"), "signed"), "forged")
				}, ErrBadSignature, trusted.ID},
				{"untrusted key", func() string { return repo.CommitSigned(t, stranger, fleetWith("bad"), "stranger") }, ErrUntrustedKey, stranger.ID},
			} {
				commit := tt.commit()
				rev, err := g.Read(context.Background())
				var sigErr *SignatureError
				var revErr *RevisionError
				if !errors.As(err, &sigErr) || !errors.As(err, &revErr) || !errors.Is(err, tt.reason) {
					t.Errorf("%s: Read = %v, want a *RevisionError with a *SignatureError for %v", tt.name, err, tt.reason)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, commit) || !strings.Contains(msg, tt.signer) || !strings.Contains(msg, tt.reason.Error()) {
					t.Errorf("%s: error %q does not name commit %s, key %q and %q", tt.name, msg, commit, tt.signer, tt.reason)
				}
				if sigErr.Signer != tt.signer {
					t.Errorf("%s: Signer = %q, want %q", tt.name, sigErr.Signer, tt.signer)
				}
				if rev.Commit != commit || rev.Fleet != nil {
					t.Errorf("%s: refused revision = %s with fleet %v, want %s without one", tt.name, rev.Commit, rev.Fleet != nil, commit)
				}
				if last, _ := g.Last(); last.Commit != good {
					t.Errorf("%s: Last = %s, want the last good %s", tt.name, last.Commit, good)
				}
				// The refusal holds at the next poll, without a fetch.
				before := g.fetches
				if _, err := g.Read(context.Background()); !errors.Is(err, tt.reason) || g.fetches != before {
					t.Errorf("%s: next poll = %v after %d fetches, want the same refusal and none", tt.name, err, g.fetches-before)
				}
			}
			next := repo.CommitSigned(t, trusted, fleetWith("next"), "next")
			if rev := readAt(t, g); rev.Commit != next {
				t.Errorf("after a new signed commit: %s, want %s", rev.Commit, next)
			}
		})
	}
}

// For tag and semver refs, the annotated tag's signature is what counts.
func TestGitVerifyTagSignatures(t *testing.T) {
	requireGit(t)
	for _, format := range []string{"openpgp", "ssh"} {
		t.Run(format, func(t *testing.T) {
			cfg := GitConfig{Ref: "semver:^1", VerifySignatures: true}
			var trusted *testenv.Signer
			if format == "ssh" {
				trusted = testenv.NewSSHSigner(t, "release@drover.invalid")
				cfg.AllowedSigners = writeFile(t, "allowed_signers", trusted.Public)
			} else {
				trusted = testenv.NewGPGSigner(t, "release@drover.invalid")
				cfg.TrustedKeys = writeFile(t, "k.asc", trusted.Public)
			}
			repo := testenv.NewRepo(t)
			cfg.URL = repo.URL()
			one := repo.CommitSigned(t, nil, fleetWith("one"), "one") // an unsigned commit
			repo.Tag(t, "v1.0.0", one, true, trusted)
			g := newGit(t, cfg)
			if rev := readAt(t, g); rev.Commit != one || rev.Tag != "v1.0.0" {
				t.Fatalf("Read = %s %q, want %s v1.0.0", rev.Commit, rev.Tag, one)
			}
			two := repo.CommitSigned(t, trusted, fleetWith("two"), "two") // signed, but the tag is not
			repo.Tag(t, "v1.1.0", two, true, nil)
			_, err := g.Read(context.Background())
			if !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), "tag v1.1.0") {
				t.Errorf("unsigned tag of a signed commit: %v, want ErrUnsigned naming tag v1.1.0", err)
			}
		})
	}
}

func TestAllowedSignersRefused(t *testing.T) {
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEr2O8b2lH0Yx8Bu2rCUyqs0+KsLwGMbLh4DnxoHbu3v"
	for _, tt := range []struct{ name, file, want string }{
		{"cert authority", "*@example.com cert-authority " + key, "cert-authority is not supported"},
		{"valid after", `a@example.com valid-after="20240101" ` + key, "valid-after is not supported"},
		{"valid before", `a@example.com valid-before="20240101" ` + key, "valid-before is not supported"},
		{"unknown option", `a@example.com no-touch-required ` + key, `unknown option "no-touch-required"`},
		{"no key", "a@example.com", "want principals"},
		{"bad key", "a@example.com ssh-ed25519 AAAA", "key:"},
		{"empty", "# nothing\n", "no key"},
	} {
		p := writeFile(t, "allowed_signers", tt.file+"\n")
		_, err := NewGit(GitConfig{URL: "/r", VerifySignatures: true, AllowedSigners: p}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.name != "empty" && !strings.Contains(err.Error(), p+":1")) {
			t.Errorf("%s: NewGit = %v, want an error naming %s:1 and containing %q", tt.name, err, p, tt.want)
		}
	}
	p := writeFile(t, "allowed_signers", "# ops\n\n"+`a@example.com,"b@example.com" namespaces="git,file" `+key+" comment\n")
	if _, err := NewGit(GitConfig{URL: "/r", VerifySignatures: true, AllowedSigners: p}, nil); err != nil {
		t.Errorf("a valid allowed_signers file: %v", err)
	}
}

// An SSH signature counts only in namespace git, both in the signature and in the
// allowed_signers entry.
func TestSSHSigNamespaces(t *testing.T) {
	s := testenv.NewSSHSigner(t, "ops@drover.invalid")
	payload := writeFile(t, "payload", "tree 0000\n\nmessage\n")
	sign := func(ns string) string {
		out, err := exec.Command("ssh-keygen", "-Y", "sign", "-n", ns, "-f", s.KeyFile(), payload).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -Y sign: %v: %s", err, out)
		}
		sig, err := os.ReadFile(payload + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(payload + ".sig")
		return string(sig)
	}
	data, _ := os.ReadFile(payload)
	for _, tt := range []struct {
		name, allowed, ns string
		want              error
	}{
		{"git", s.Public, "git", nil},
		{"signed for files", s.Public, "file", ErrBadSignature},
		{"allowed for files only", strings.Replace(s.Public, `namespaces="git"`, `namespaces="file"`, 1), "git", ErrUntrustedKey},
		{"allowed in any namespace", strings.Replace(s.Public, ` namespaces="git"`, "", 1), "git", nil},
	} {
		as, err := parseAllowedSigners("allowed_signers", []byte(tt.allowed))
		if err != nil {
			t.Fatal(err)
		}
		serr := as.verify(data, sign(tt.ns))
		switch {
		case tt.want == nil && serr != nil:
			t.Errorf("%s: %v, want accepted", tt.name, serr)
		case tt.want != nil && (serr == nil || !errors.Is(serr, tt.want) || serr.Signer != s.ID):
			t.Errorf("%s: %v, want %v naming %s", tt.name, serr, tt.want, s.ID)
		}
	}
}

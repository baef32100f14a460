package sources

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Why a signature is refused; a *SignatureError unwraps to one of them.
var (
	ErrUnsigned       = errors.New("unsigned")
	ErrBadSignature   = errors.New("bad signature")
	ErrUntrustedKey   = errors.New("signed by an untrusted key")
	ErrUnknownSigning = errors.New("signature of an unsupported kind")
)

// SignatureError says why a commit or an annotated tag was refused with
// GitConfig.VerifySignatures. It comes inside a *RevisionError, so the last good
// revision stays in force until a new commit (or tag) is signed by a trusted key.
type SignatureError struct {
	// Object is what was checked: "commit" or "tag NAME"; SHA is its object ID.
	Object string
	SHA    string
	// Signer is the signing key: an OpenPGP key ID or fingerprint, or an SSH key's
	// SHA256 fingerprint; empty when unsigned or unreadable.
	Signer string
	Reason error // ErrUnsigned, ErrBadSignature, ErrUntrustedKey or ErrUnknownSigning
	Detail string
}

func (e *SignatureError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "refused %s %s: %v", e.Object, e.SHA, e.Reason)
	if e.Signer != "" {
		fmt.Fprintf(&b, " (key %s)", e.Signer)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

func (e *SignatureError) Unwrap() error { return e.Reason }

// maxKeyFileBytes bounds a trusted-keys or allowed-signers file.
const maxKeyFileBytes = 1 << 20

// verifier checks signatures against the operator's trusted keys.
type verifier struct {
	pgp openpgp.EntityList // nil without a keyring
	ssh *allowedSigners    // nil without an allowed_signers file
}

// newVerifier reads the trusted keys. At least one of the files is needed: verifying
// against no key at all would refuse everything.
func newVerifier(trustedKeys, allowedSignersFile string) (*verifier, error) {
	if trustedKeys == "" && allowedSignersFile == "" {
		return nil, errors.New("verifying signatures needs trusted keys: an armored OpenPGP keyring or an allowed_signers file")
	}
	v := &verifier{}
	if trustedKeys != "" {
		data, err := readKeyFile(trustedKeys)
		if err != nil {
			return nil, err
		}
		if v.pgp, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("trusted keys %s: want an armored OpenPGP keyring: %w", trustedKeys, err)
		}
		if len(v.pgp) == 0 {
			return nil, fmt.Errorf("trusted keys %s: no key", trustedKeys)
		}
	}
	if allowedSignersFile != "" {
		data, err := readKeyFile(allowedSignersFile)
		if err != nil {
			return nil, err
		}
		if v.ssh, err = parseAllowedSigners(allowedSignersFile, data); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func readKeyFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read keys %s: %w", name, err)
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("read keys %s: more than %d bytes", name, maxKeyFileBytes)
	}
	return data, nil
}

// verify checks the signature of what the ref resolved to: the annotated tag for a
// tag or semver ref that points at one, else the commit. Without VerifySignatures it
// accepts everything.
func (g *Git) verify(repo *git.Repository, res resolved) error {
	if g.verifier == nil {
		return nil
	}
	var (
		what, signature string
		encoded         = &plumbing.MemoryObject{}
		err             error
	)
	if res.annotated {
		var tag *object.Tag
		if tag, err = repo.TagObject(res.target); err == nil {
			what, signature = "tag "+res.tag, tag.PGPSignature
			err = tag.EncodeWithoutSignature(encoded)
		}
	} else {
		var c *object.Commit
		if c, err = repo.CommitObject(res.commit); err == nil {
			what, signature = "commit", c.PGPSignature
			err = c.EncodeWithoutSignature(encoded)
		}
	}
	if err != nil {
		return fmt.Errorf("verify signature of %s: %w", res.target, err)
	}
	r, err := encoded.Reader()
	if err != nil {
		return err
	}
	payload, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if serr := g.verifier.check(payload, signature); serr != nil {
		serr.Object, serr.SHA = what, res.target.String()
		return &RevisionError{Commit: res.commit.String(), Err: serr}
	}
	return nil
}

// check verifies signature over payload; the error's Object and SHA are left for the
// caller.
func (v *verifier) check(payload []byte, signature string) *SignatureError {
	switch {
	case strings.TrimSpace(signature) == "":
		return &SignatureError{Reason: ErrUnsigned}
	case strings.HasPrefix(signature, "-----BEGIN PGP SIGNATURE-----"):
		return v.checkPGP(payload, signature)
	case strings.HasPrefix(signature, sshsigArmorBegin):
		if v.ssh == nil {
			return &SignatureError{Reason: ErrUntrustedKey, Signer: sshsigSigner(signature), Detail: "an SSH signature, and no allowed_signers file is configured"}
		}
		return v.ssh.verify(payload, signature)
	}
	return &SignatureError{Reason: ErrUnknownSigning, Detail: "neither OpenPGP nor SSH"}
}

func (v *verifier) checkPGP(payload []byte, signature string) *SignatureError {
	signer := pgpIssuer(signature)
	if v.pgp == nil {
		return &SignatureError{Reason: ErrUntrustedKey, Signer: signer, Detail: "an OpenPGP signature, and no OpenPGP keyring is configured"}
	}
	_, err := openpgp.CheckArmoredDetachedSignature(v.pgp, bytes.NewReader(payload), strings.NewReader(signature), nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return &SignatureError{Reason: ErrUntrustedKey, Signer: signer, Detail: "not in the trusted keys"}
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrKeyRevoked):
		return &SignatureError{Reason: ErrUntrustedKey, Signer: signer, Detail: err.Error()}
	default:
		return &SignatureError{Reason: ErrBadSignature, Signer: signer, Detail: err.Error()}
	}
}

// pgpIssuer is the signing key's fingerprint, or key ID, as the signature names it.
func pgpIssuer(signature string) string {
	block, err := armor.Decode(strings.NewReader(signature))
	if err != nil {
		return ""
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return ""
	}
	sig, ok := p.(*packet.Signature)
	switch {
	case !ok:
		return ""
	case len(sig.IssuerFingerprint) > 0:
		return fmt.Sprintf("%X", sig.IssuerFingerprint)
	case sig.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	return ""
}

package sources

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// go-git does not verify SSH signatures: this is OpenSSH's sshsig format
// (PROTOCOL.sshsig), as `ssh-keygen -Y sign -n git` writes it and git stores it, with
// trust from an allowed_signers file (ssh-keygen(1), "ALLOWED SIGNERS").

const (
	sshsigArmorBegin = "-----BEGIN SSH SIGNATURE-----"
	sshsigArmorEnd   = "-----END SSH SIGNATURE-----"
	sshsigMagic      = "SSHSIG"
	// sshsigNamespace is the namespace git signs commits and tags in.
	sshsigNamespace = "git"
)

// sshsig is a decoded signature blob.
type sshsig struct {
	Version       uint32
	PublicKey     []byte
	Namespace     string
	Reserved      string
	HashAlgorithm string
	Signature     []byte
}

func decodeSSHSig(armored string) (*sshsig, ssh.PublicKey, error) {
	body, ok := strings.CutPrefix(strings.TrimSpace(armored), sshsigArmorBegin)
	if !ok {
		return nil, nil, fmt.Errorf("not an SSH signature")
	}
	body, ok = strings.CutSuffix(body, sshsigArmorEnd)
	if !ok {
		return nil, nil, fmt.Errorf("SSH signature without its end line")
	}
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return nil, nil, fmt.Errorf("SSH signature: %w", err)
	}
	rest, ok := bytes.CutPrefix(blob, []byte(sshsigMagic))
	if !ok {
		return nil, nil, fmt.Errorf("SSH signature: no %s magic", sshsigMagic)
	}
	var sig sshsig
	if err := ssh.Unmarshal(rest, &sig); err != nil {
		return nil, nil, fmt.Errorf("SSH signature: %w", err)
	}
	if sig.Version != 1 {
		return nil, nil, fmt.Errorf("SSH signature: version %d, want 1", sig.Version)
	}
	pub, err := ssh.ParsePublicKey(sig.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("SSH signature: public key: %w", err)
	}
	return &sig, pub, nil
}

// sshsigSigner is the fingerprint of the key a signature names, for messages.
func sshsigSigner(armored string) string {
	_, pub, err := decodeSSHSig(armored)
	if err != nil {
		return ""
	}
	return ssh.FingerprintSHA256(pub)
}

// verifySSHSig checks the signature over message in namespace, whoever the key is.
func verifySSHSig(sig *sshsig, pub ssh.PublicKey, message []byte, namespace string) error {
	if sig.Namespace != namespace {
		return fmt.Errorf("signed in namespace %q, not %q", sig.Namespace, namespace)
	}
	var digest []byte
	switch sig.HashAlgorithm {
	case "sha256":
		h := sha256.Sum256(message)
		digest = h[:]
	case "sha512":
		h := sha512.Sum512(message)
		digest = h[:]
	default:
		return fmt.Errorf("hash algorithm %q: want sha256 or sha512", sig.HashAlgorithm)
	}
	var s ssh.Signature
	if err := ssh.Unmarshal(sig.Signature, &s); err != nil {
		return fmt.Errorf("signature blob: %w", err)
	}
	if s.Format == ssh.KeyAlgoRSA { // SHA-1: PROTOCOL.sshsig forbids it
		return fmt.Errorf("RSA signature with SHA-1")
	}
	signed := append([]byte(sshsigMagic), ssh.Marshal(struct {
		Namespace, Reserved, HashAlgorithm string
		Hash                               []byte
	}{sig.Namespace, "", sig.HashAlgorithm, digest})...)
	return pub.Verify(signed, &s)
}

// allowedSigners is a parsed allowed_signers file.
type allowedSigners struct {
	entries []allowedSigner
}

type allowedSigner struct {
	principals string
	key        ssh.PublicKey
	namespaces []string // nil: any
	line       string   // file:line, for messages
}

// parseAllowedSigners reads "principals [options] keytype key [comment]" lines. It
// refuses what it does not implement rather than trust more than the file says:
// cert-authority (keys that vouch for certificates) and validity windows.
func parseAllowedSigners(name string, data []byte) (*allowedSigners, error) {
	as := &allowedSigners{}
	for i, line := range strings.Split(string(data), "\n") {
		at := fmt.Sprintf("%s:%d", name, i+1)
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields, err := splitQuoted(line)
		if err != nil || len(fields) < 3 {
			return nil, fmt.Errorf("allowed signers %s: want principals [options] keytype key", at)
		}
		e := allowedSigner{principals: strings.Trim(fields[0], `"`), line: at}
		// The rest is an authorized_keys line: [options] keytype key [comment].
		key, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(fields[1:], " ")))
		if err != nil {
			return nil, fmt.Errorf("allowed signers %s: key: %w", at, err)
		}
		if err := e.parseOptions(opts, at); err != nil {
			return nil, err
		}
		e.key = key
		as.entries = append(as.entries, e)
	}
	if len(as.entries) == 0 {
		return nil, fmt.Errorf("allowed signers %s: no key", name)
	}
	return as, nil
}

func (e *allowedSigner) parseOptions(list []string, at string) error {
	for _, opt := range list {
		name, value, _ := strings.Cut(opt, "=")
		switch strings.ToLower(name) {
		case "namespaces":
			e.namespaces = strings.Split(strings.Trim(value, `"`), ",")
		case "cert-authority":
			return fmt.Errorf("allowed signers %s: cert-authority is not supported: list the signers' own keys", at)
		case "valid-after", "valid-before":
			return fmt.Errorf("allowed signers %s: %s is not supported: remove the key instead when it must no longer be trusted", at, name)
		default:
			return fmt.Errorf("allowed signers %s: unknown option %q", at, name)
		}
	}
	return nil
}

// splitQuoted splits on blanks outside double quotes.
func splitQuoted(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

// verify checks an armored SSH signature of message made for git.
func (as *allowedSigners) verify(message []byte, armored string) *SignatureError {
	sig, pub, err := decodeSSHSig(armored)
	if err != nil {
		return &SignatureError{Reason: ErrBadSignature, Detail: err.Error()}
	}
	signer := ssh.FingerprintSHA256(pub)
	if err := verifySSHSig(sig, pub, message, sshsigNamespace); err != nil {
		return &SignatureError{Reason: ErrBadSignature, Signer: signer, Detail: err.Error()}
	}
	wire := pub.Marshal()
	for _, e := range as.entries {
		if !bytes.Equal(e.key.Marshal(), wire) {
			continue
		}
		if e.namespaces != nil && !slices.Contains(e.namespaces, sshsigNamespace) {
			continue
		}
		return nil
	}
	return &SignatureError{Reason: ErrUntrustedKey, Signer: signer, Detail: "not in the allowed signers for namespace git"}
}

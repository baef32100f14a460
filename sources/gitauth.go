package sources

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/internal/secretfile"
)

// GitAuth says how the source proves who it is to the remote, beyond credentials in an
// http(s) URL. Files are read again at every call to the remote, so a rotated token,
// key or known_hosts file is used without a restart; each is bounded (secretfile).
type GitAuth struct {
	// SSHKeyFile is a private key (a deploy key) for ssh:// remotes, OpenSSH or PEM.
	SSHKeyFile string
	// SSHKeyPassphraseFile holds the passphrase of an encrypted SSHKeyFile.
	SSHKeyPassphraseFile string
	// SSHAgent authenticates with the keys of the agent at $SSH_AUTH_SOCK. Never used
	// unless asked for.
	SSHAgent bool
	// KnownHostsFile lists the host keys an ssh:// remote may present, in OpenSSH's
	// known_hosts format; required for ssh:// remotes. Host keys are always verified.
	KnownHostsFile string

	// Username is the HTTP basic authentication user for http(s) remotes.
	Username string
	// PasswordFile holds the password of Username.
	PasswordFile string
	// TokenFile holds an access token, sent as the password of Username, or of
	// DefaultTokenUser when Username is empty.
	TokenFile string
	// CAFile is a PEM bundle of CA certificates trusted for https remotes, beside the
	// system's.
	CAFile string
}

// DefaultTokenUser is the user a token from GitAuth.TokenFile is sent as when no user
// is given: GitHub wants one and ignores it, Gitea, Forgejo and GitLab take a token as
// any user's password.
const DefaultTokenUser = "x-access-token"

// ErrAuth means the remote refused the credentials Drover gave (or asked for some when
// none were given). It comes with ErrFetch and names what was tried, never the secret.
var ErrAuth = errors.New("git authentication failed")

// maxCABundle bounds --git-ca-file: a distribution's whole bundle is about 220 KiB.
const maxCABundle = 1 << 20

// remote is where a Git fetches from, with any credential the operator put in the URL
// taken out of it: the URL without them goes to go-git and into the clone's
// .git/config, the credential goes to go-git as an AuthMethod, and everything shown
// (logs, errors, Config) uses display.
type remote struct {
	url     string               // the URL without credentials
	auth    transport.AuthMethod // nil when the URL has none
	display string               // the URL as configured, credentials masked
	secrets []string             // credential strings to mask in messages from go-git
}

// minSecretLen keeps a very short password from masking every occurrence of its
// letters in messages; URL patterns are masked whatever the password.
const minSecretLen = 4

// splitCredentials takes the user info out of an http(s) URL. Other URLs are kept as
// they are: git:// has no authentication, ssh:// names a user, not a secret, and a
// local path has neither.
func splitCredentials(raw string) remote {
	r := remote{url: raw, display: redact.URL(raw)}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return r
	}
	user := u.User.Username()
	password, hasPassword := u.User.Password()
	// go-git does the same with a URL's user info: basic authentication, a bare
	// user being a token (https://TOKEN@host).
	r.auth = &githttp.BasicAuth{Username: user, Password: password}
	// The secret, decoded and as written in the URL (percent-encoded).
	escaped := strings.TrimSuffix(u.User.String(), "@")
	secret := user
	if hasPassword {
		secret = password
		escaped = escaped[strings.IndexByte(escaped, ':')+1:]
	}
	if len(secret) >= minSecretLen {
		r.secrets = append(r.secrets, secret)
	}
	if escaped != secret && len(escaped) >= minSecretLen {
		r.secrets = append(r.secrets, escaped)
	}
	u.User = nil
	r.url = u.String()
	return r
}

// authPlan is GitAuth checked against the remote's protocol at start-up.
type authPlan struct {
	cfg      GitAuth
	protocol string // go-git's: ssh, http, https, git, file
	ssh      *sshPlan
}

// newAuthPlan checks that the authentication asked for fits the remote: SSH options
// for ssh:// remotes (which need a key or the agent, and known_hosts), HTTP options for
// http(s) ones, never both ways at once.
func newAuthPlan(a GitAuth, ep *transport.Endpoint, r remote) (*authPlan, error) {
	p := &authPlan{cfg: a, protocol: ep.Protocol}
	var problems []string
	isSSH := ep.Protocol == "ssh"
	isHTTP := ep.Protocol == "http" || ep.Protocol == "https"
	sshFlags := map[string]bool{"--git-ssh-key": a.SSHKeyFile != "", "--git-ssh-key-passphrase-file": a.SSHKeyPassphraseFile != "",
		"--git-ssh-agent": a.SSHAgent, "--git-known-hosts": a.KnownHostsFile != ""}
	httpFlags := map[string]bool{"--git-username": a.Username != "", "--git-password-file": a.PasswordFile != "",
		"--git-token-file": a.TokenFile != "", "--git-ca-file": a.CAFile != ""}
	for _, name := range []string{"--git-ssh-key", "--git-ssh-key-passphrase-file", "--git-ssh-agent", "--git-known-hosts"} {
		if sshFlags[name] && !isSSH {
			problems = append(problems, fmt.Sprintf("%s is for ssh:// repositories, not %s ones", name, ep.Protocol))
		}
	}
	for _, name := range []string{"--git-username", "--git-password-file", "--git-token-file", "--git-ca-file"} {
		if httpFlags[name] && !isHTTP {
			problems = append(problems, fmt.Sprintf("%s is for https:// repositories, not %s ones", name, ep.Protocol))
		}
	}
	if isSSH {
		switch {
		case a.SSHKeyFile == "" && !a.SSHAgent:
			problems = append(problems, "an ssh:// repository needs --git-ssh-key FILE (a deploy key) or --git-ssh-agent")
		case a.SSHKeyFile != "" && a.SSHAgent:
			problems = append(problems, "--git-ssh-key and --git-ssh-agent: give one")
		}
		if a.SSHKeyPassphraseFile != "" && a.SSHKeyFile == "" {
			problems = append(problems, "--git-ssh-key-passphrase-file needs --git-ssh-key")
		}
		if a.KnownHostsFile == "" {
			problems = append(problems, "an ssh:// repository needs --git-known-hosts FILE: Drover verifies the server's host key and never trusts an unknown one")
		}
	}
	if isHTTP {
		switch {
		case a.PasswordFile != "" && a.TokenFile != "":
			problems = append(problems, "--git-password-file and --git-token-file: give one")
		case a.PasswordFile != "" && a.Username == "":
			problems = append(problems, "--git-password-file needs --git-username")
		case a.Username != "" && a.PasswordFile == "" && a.TokenFile == "":
			problems = append(problems, "--git-username needs --git-password-file or --git-token-file")
		}
		if (a.PasswordFile != "" || a.TokenFile != "") && r.auth != nil {
			problems = append(problems, "the repository URL carries credentials and a password or token file is given: use one")
		}
		if ep.Protocol == "http" && a.CAFile != "" {
			problems = append(problems, "--git-ca-file is for https:// repositories, not http ones")
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("git source: %s", strings.Join(problems, "; "))
	}
	if isSSH {
		p.ssh = newSSHPlan(a, ep)
	}
	return p, nil
}

// setUpAuth checks GitConfig.Auth against the remote's protocol, takes the secrets
// set out of the configuration (Config does not show it), and reads the credentials
// once, so that a missing file or a wrong passphrase is found at start.
func (g *Git) setUpAuth(ep *transport.Endpoint) error {
	g.secrets = g.cfg.Secrets
	if g.secrets == nil {
		g.secrets = redact.NewSet()
	}
	g.cfg.Secrets = nil
	g.secrets.Add(g.remote.secrets...)
	plan, err := newAuthPlan(g.cfg.Auth, ep, g.remote)
	if err != nil {
		return err
	}
	g.authPlan = plan
	if _, _, err := g.callAuth(); err != nil {
		return fmt.Errorf("git source %s: %w", g.remote.display, redact.Error(err, g.secrets.List()...))
	}
	return nil
}

// CheckGitAuth checks, reading no file, that auth fits the remote at url: the first
// check NewGit makes, for a command line to report beside its other usage errors. A
// URL that does not parse is left for NewGit to report.
func CheckGitAuth(url string, auth GitAuth) error {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil
	}
	_, err = newAuthPlan(auth, ep, splitCredentials(url))
	return err
}

// callAuth is the authentication and CA bundle for one call to the remote (a ref
// listing, a fetch), with the files read again so that a rotated token, key or CA is
// used without a restart. Every secret read joins the set the logger, errors and
// /status mask before it can be printed.
func (g *Git) callAuth() (transport.AuthMethod, []byte, error) {
	p := g.authPlan
	if p == nil {
		return g.remote.auth, nil, nil
	}
	var ca []byte
	if p.cfg.CAFile != "" {
		var err error
		if ca, err = readCABundle(p.cfg.CAFile); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case p.ssh != nil:
		auth, err := p.ssh.auth(g.secrets)
		return auth, ca, err
	case p.cfg.PasswordFile != "" || p.cfg.TokenFile != "":
		file, user := p.cfg.PasswordFile, p.cfg.Username
		if file == "" {
			file = p.cfg.TokenFile
			if user == "" {
				user = DefaultTokenUser
			}
		}
		secret, err := secretfile.ReadLine(file)
		if err != nil {
			return nil, nil, err
		}
		g.secrets.Add(secret)
		return &githttp.BasicAuth{Username: user, Password: secret}, ca, nil
	}
	return g.remote.auth, ca, nil
}

// readCABundle reads a PEM bundle and checks it holds at least one certificate, so
// that a wrong file is named instead of every https fetch failing verification.
func readCABundle(path string) ([]byte, error) {
	data, err := secretfile.Read(path, maxCABundle)
	if err != nil {
		return nil, fmt.Errorf("--git-ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		if block, _ := pem.Decode(data); block == nil {
			return nil, fmt.Errorf("--git-ca-file %s: no PEM certificate in it", path)
		}
		return nil, fmt.Errorf("--git-ca-file %s: no valid certificate in it", path)
	}
	return data, nil
}

// authError says what the refused credentials were when the remote refused them.
// x/crypto/ssh has no error value for a refused key, only its message.
func (g *Git) authError(err error) error {
	refused := errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed) ||
		strings.Contains(err.Error(), "ssh: unable to authenticate")
	if !refused {
		return err
	}
	return fmt.Errorf("%w (%s): %w", ErrAuth, g.authDescription(), err)
}

// authDescription names the credentials in use, never their value.
func (g *Git) authDescription() string {
	p := g.authPlan
	switch {
	case p != nil && p.ssh != nil && p.cfg.SSHAgent:
		return fmt.Sprintf("as ssh user %q with the keys of the SSH agent", p.ssh.user)
	case p != nil && p.ssh != nil:
		return fmt.Sprintf("as ssh user %q with the key in %s", p.ssh.user, p.cfg.SSHKeyFile)
	case p != nil && p.cfg.PasswordFile != "":
		return fmt.Sprintf("as user %q with the password in %s", p.cfg.Username, p.cfg.PasswordFile)
	case p != nil && p.cfg.TokenFile != "":
		user := p.cfg.Username
		if user == "" {
			user = DefaultTokenUser
		}
		return fmt.Sprintf("as user %q with the token in %s", user, p.cfg.TokenFile)
	case g.remote.auth != nil:
		return "with the credentials in the repository URL"
	}
	return "without credentials: give --git-username with --git-password-file or --git-token-file"
}

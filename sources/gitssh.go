package sources

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/internal/secretfile"
)

// Host key refusals, each inside a *HostKeyError (with ErrFetch around it).
var (
	// ErrHostKeyUnknown: the known_hosts file lists no key for the host.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrHostKeyChanged: the file lists keys for the host and the server offered
	// another one: a re-keyed server, or someone in the middle.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrHostKeyRevoked: the server offered a key the file marks @revoked.
	ErrHostKeyRevoked = errors.New("host key revoked")
)

// HostKeyError is an SSH server's host key that the known_hosts file does not let
// Drover trust. Drover never accepts such a key: the operator decides.
type HostKeyError struct {
	Kind        error  // ErrHostKeyUnknown, ErrHostKeyChanged or ErrHostKeyRevoked
	Host        string // host:port as dialled
	KeyType     string // of the key the server offered
	Fingerprint string // SHA256:… of that key
	File        string // the known_hosts file
	Known       []string
}

func (e *HostKeyError) Error() string {
	offered := e.KeyType + " " + e.Fingerprint
	switch e.Kind {
	case ErrHostKeyUnknown:
		return fmt.Sprintf("%v: %s offered %s, and %s lists no key for it: add the host's key, checked out of band (ssh-keyscan%s), to the file",
			e.Kind, e.Host, offered, e.File, keyscanArgs(e.Host))
	case ErrHostKeyChanged:
		return fmt.Sprintf("%v: %s offered %s, but %s lists %s for it: the server was re-keyed or someone is in the middle; check with its administrator before changing the file",
			e.Kind, e.Host, offered, e.File, strings.Join(e.Known, ", "))
	default:
		return fmt.Sprintf("%v: %s offered %s, which %s marks @revoked (%s)", e.Kind, e.Host, offered, e.File, strings.Join(e.Known, ", "))
	}
}

func (e *HostKeyError) Unwrap() error { return e.Kind }

func keyscanArgs(hostPort string) string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return " " + hostPort
	}
	if port == "22" {
		return " " + host
	}
	return " -p " + port + " " + host
}

// sshPlan is the SSH side of GitAuth for one remote.
type sshPlan struct {
	cfg      GitAuth
	user     string
	hostPort string // what go-git dials, for the host key algorithms to ask for
	agent    *sshAgent
	// knownHosts is the file parsed, kept until it changes.
	knownHosts parsedFile[*knownhosts.HostKeyDB]
}

func newSSHPlan(a GitAuth, ep *transport.Endpoint) *sshPlan {
	user := ep.User
	if user == "" {
		user = "git"
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	p := &sshPlan{cfg: a, user: user, hostPort: net.JoinHostPort(ep.Host, strconv.Itoa(port))}
	if a.SSHAgent {
		p.agent = &sshAgent{}
	}
	return p
}

// auth reads the key (or reaches the agent) and the known_hosts file for one call.
func (p *sshPlan) auth(secrets *redact.Set) (transport.AuthMethod, error) {
	db, err := p.knownHosts.get(p.cfg.KnownHostsFile, loadKnownHosts)
	if err != nil {
		return nil, err
	}
	a := &sshAuth{user: p.user, file: p.cfg.KnownHostsFile, db: db,
		// Ask only for the key types the file lists for this host: a server with
		// an ECDSA and an ed25519 key, listed by its ed25519 key alone, would
		// otherwise offer the ECDSA one and look changed. Unknown host: none
		// listed, any algorithm, and the callback refuses the key.
		algorithms: db.HostKeyAlgorithms(p.hostPort)}
	if p.agent != nil {
		a.method = ssh.PublicKeysCallback(p.agent.signers)
		return a, nil
	}
	signer, err := readSSHKey(p.cfg.SSHKeyFile, p.cfg.SSHKeyPassphraseFile, secrets)
	if err != nil {
		return nil, err
	}
	a.method = ssh.PublicKeys(signer)
	return a, nil
}

// maxKnownHosts bounds --git-known-hosts.
const maxKnownHosts = 1 << 20

func loadKnownHosts(path string) (*knownhosts.HostKeyDB, error) {
	// Read through secretfile first: knownhosts opens the path itself, and a FIFO
	// or a huge file there must fail here, bounded.
	if _, err := secretfile.Read(path, maxKnownHosts); err != nil {
		return nil, fmt.Errorf("--git-known-hosts: %w", err)
	}
	db, err := knownhosts.NewDB(path)
	if err != nil {
		return nil, fmt.Errorf("--git-known-hosts %s: %w", path, err)
	}
	return db, nil
}

func readSSHKey(path, passphraseFile string, secrets *redact.Set) (ssh.Signer, error) {
	pem, err := secretfile.Read(path, secretfile.MaxSize)
	if err != nil {
		return nil, fmt.Errorf("--git-ssh-key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing) && passphraseFile == "":
		return nil, fmt.Errorf("--git-ssh-key %s: the key is encrypted: give its passphrase with --git-ssh-key-passphrase-file", path)
	case errors.As(err, &missing):
		pass, err := readPassphrase(passphraseFile, secrets)
		if err != nil {
			return nil, err
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		if err != nil {
			// The x509 and ssh errors for a wrong passphrase say nothing of it.
			return nil, fmt.Errorf("--git-ssh-key %s: decrypt with the passphrase in %s: %w", path, passphraseFile, err)
		}
	case err != nil:
		return nil, fmt.Errorf("--git-ssh-key %s: not a private key: %w", path, err)
	}
	return signer, nil
}

// sshAuth is a go-git SSH AuthMethod that always verifies the host key against one
// known_hosts file. go-git's own methods fall back to ~/.ssh/known_hosts and the
// agent when something is unset; this one has nothing to fall back from.
type sshAuth struct {
	user       string
	method     ssh.AuthMethod
	file       string
	db         *knownhosts.HostKeyDB
	algorithms []string
}

var _ gitssh.AuthMethod = (*sshAuth)(nil)

func (a *sshAuth) Name() string   { return "ssh-drover" }
func (a *sshAuth) String() string { return "user: " + a.user + ", name: " + a.Name() }

// ClientConfig is called by go-git at every connection.
func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              []ssh.AuthMethod{a.method},
		HostKeyCallback:   a.checkHostKey,
		HostKeyAlgorithms: a.algorithms,
		// The dial and handshake; the whole call is bounded by the source's timeout.
		Timeout: 30 * time.Second,
	}, nil
}

// checkHostKey turns knownhosts' verdict into a HostKeyError naming host, key and file.
func (a *sshAuth) checkHostKey(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := a.db.HostKeyCallback()(hostname, remote, key)
	if err == nil {
		return nil
	}
	e := &HostKeyError{Host: hostname, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), File: a.file}
	var revoked *xknownhosts.RevokedError
	var keyErr *xknownhosts.KeyError
	switch {
	case errors.As(err, &revoked):
		e.Kind = ErrHostKeyRevoked
		e.Known = []string{fmt.Sprintf("line %d", revoked.Revoked.Line)}
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		e.Kind = ErrHostKeyUnknown
	case errors.As(err, &keyErr):
		e.Kind = ErrHostKeyChanged
		for _, k := range keyErr.Want {
			e.Known = append(e.Known, fmt.Sprintf("%s %s (line %d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Line))
		}
	default:
		return fmt.Errorf("check host key of %s against %s: %w", hostname, a.file, err)
	}
	return e
}

// sshAgent is one connection to the SSH agent, opened when first needed and again
// after it broke. A signer from the agent signs over the connection it came from, so
// it stays open for the source's life rather than one per fetch.
type sshAgent struct {
	mu   sync.Mutex
	conn net.Conn
}

func (a *sshAgent) signers() ([]ssh.Signer, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var lastErr error
	for range 2 { // the agent may have restarted since the last call
		if a.conn == nil {
			sock, err := sshAuthSock()
			if err != nil {
				return nil, err
			}
			c, err := net.DialTimeout("unix", sock, 10*time.Second)
			if err != nil {
				return nil, fmt.Errorf("connect to the SSH agent at %s: %w", sock, err)
			}
			a.conn = c
		}
		// A hung agent must not hold a fetch beyond the handshake's time.
		_ = a.conn.SetDeadline(time.Now().Add(30 * time.Second))
		signers, err := agent.NewClient(a.conn).Signers()
		if err == nil {
			if len(signers) == 0 {
				return nil, errors.New("the SSH agent holds no key")
			}
			return signers, nil
		}
		a.conn.Close()
		a.conn = nil
		lastErr = err
	}
	return nil, fmt.Errorf("list the SSH agent's keys: %w", lastErr)
}

// readPassphrase reads the passphrase of an encrypted key.
func readPassphrase(path string, secrets *redact.Set) ([]byte, error) {
	pass, err := secretfile.ReadLine(path)
	if err != nil {
		return nil, fmt.Errorf("--git-ssh-key-passphrase-file: %w", err)
	}
	secrets.Add(pass)
	return []byte(pass), nil
}

// sshAuthSock is where the agent listens, for --git-ssh-agent.
func sshAuthSock() (string, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return "", errors.New("git source: --git-ssh-agent: SSH_AUTH_SOCK is not set")
	}
	return sock, nil
}

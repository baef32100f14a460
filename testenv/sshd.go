package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHServer is OpenSSH's sshd on 127.0.0.1 serving the repositories in one directory
// to git over ssh://, as a git host does for deploy keys: its own host keys (ed25519
// and ECDSA), public-key login only for the keys the test authorised, and a forced
// command that runs git-upload-pack and nothing else (no shell, no push, no
// forwarding). It stops when the test ends.
type SSHServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string

	user     string
	hostKeys map[string]string // key type (ssh-ed25519…) → "TYPE BASE64"
	packs    packCounter
	log      *SyncBuffer
}

// SSHKey is a key pair made by ssh-keygen for a test: a deploy key, or one that is
// not authorised anywhere.
type SSHKey struct {
	// PrivateFile holds the private key (OpenSSH format, encrypted when made with a
	// passphrase); what --git-ssh-key takes.
	PrivateFile string
	// Public is the public key line, "ssh-ed25519 AAAA… comment".
	Public string
}

// RequireSSHD returns the path of sshd, or skips the test (fails it in CI) when
// openssh-server or ssh-keygen is missing.
func RequireSSHD(t testing.TB) string {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
		if _, err := os.Stat(sshd); err != nil {
			Unavailable(t, "sshd is not installed (openssh-server): %v", err)
		}
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		Unavailable(t, "ssh-keygen is not installed (openssh-client): %v", err)
	}
	return sshd
}

// NewSSHKey makes an ed25519 key pair with ssh-keygen; encrypted when passphrase is
// not empty.
func NewSSHKey(t testing.TB, passphrase string) SSHKey {
	t.Helper()
	RequireSSHD(t)
	return sshKeygen(t, "ed25519", passphrase, filepath.Join(t.TempDir(), "id_ed25519"))
}

func sshKeygen(t testing.TB, typ, passphrase, file string) SSHKey {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", typ, "-N", passphrase, "-C", "drover-test", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -t %s: %v\n%s", typ, err, out)
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatalf("ssh-keygen: %v", err)
	}
	return SSHKey{PrivateFile: file, Public: strings.TrimSpace(string(pub))}
}

// ServeSSH starts sshd for the repositories under root, letting in the holders of
// the authorized keys.
func ServeSSH(t testing.TB, root string, authorized ...SSHKey) *SSHServer {
	t.Helper()
	sshd := RequireSSHD(t)
	me, err := user.Current()
	if err != nil {
		t.Fatalf("sshd: %v", err)
	}
	if os.Geteuid() == 0 {
		// sshd run as root insists on its privilege separation directory, which
		// Debian's package creates only when it starts the system's sshd.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd: %v", err)
		}
	}
	dir := t.TempDir()
	s := &SSHServer{user: me.Username, hostKeys: map[string]string{}, packs: newPackCounter(t), log: &SyncBuffer{}}
	var hostKeyLines []string
	for _, typ := range []string{"ed25519", "ecdsa"} {
		file := filepath.Join(dir, "ssh_host_"+typ+"_key")
		k := sshKeygen(t, typ, "", file)
		fields := strings.Fields(k.Public)
		s.hostKeys[fields[0]] = fields[0] + " " + fields[1]
		hostKeyLines = append(hostKeyLines, "HostKey "+file)
	}
	var keys []string
	for _, k := range authorized {
		keys = append(keys, k.Public)
	}
	authorizedFile := filepath.Join(dir, "authorized_keys")
	writeFile(t, authorizedFile, strings.Join(keys, "\n")+"\n", 0o600)
	// The forced command: git-upload-pack of a repository under root, nothing else.
	// go-git sends "git-upload-pack '/name'".
	forced := filepath.Join(dir, "upload-pack-only")
	writeFile(t, forced, `#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
"git-upload-pack '"*"'") ;;
*) echo "this server runs git-upload-pack only" >&2; exit 1 ;;
esac
p=${SSH_ORIGINAL_COMMAND#"git-upload-pack '"}
p=${p%"'"}
case "$p" in
*..*|*"'"*) echo "bad repository path" >&2; exit 1 ;;
esac
exec git -c uploadpack.packObjectsHook='`+s.packs.hook+`' -c safe.directory='*' upload-pack '`+root+`'"$p"
`, 0o755)
	s.Addr = serveOnFreePort(t, "sshd", s.log, func(port int) *exec.Cmd {
		config := filepath.Join(dir, "sshd_config")
		writeFile(t, config, strings.Join(append(hostKeyLines,
			"Port "+strconv.Itoa(port),
			"ListenAddress 127.0.0.1",
			"PidFile none",
			"AuthorizedKeysFile "+authorizedFile,
			"AuthenticationMethods publickey",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			"PermitRootLogin prohibit-password",
			"StrictModes no", // the test's temporary directories are not a home
			"AllowUsers "+s.user,
			"ForceCommand "+forced,
			"PermitUserRC no",
			"PermitUserEnvironment no",
			"AllowTcpForwarding no",
			"AllowAgentForwarding no",
			"AllowStreamLocalForwarding no",
			"X11Forwarding no",
			"PermitTTY no",
			"PermitTunnel no",
			"LogLevel VERBOSE",
		), "\n")+"\n", 0o600)
		return exec.Command(sshd, "-D", "-e", "-f", config)
	})
	return s
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// RepoURL is the ssh:// URL of the repository in directory name under root.
func (s *SSHServer) RepoURL(name string) string {
	return "ssh://" + s.user + "@" + s.Addr + "/" + name
}

// HostKeyTypes are the types of the server's host keys: ecdsa-sha2-nistp256 and
// ssh-ed25519.
func (s *SSHServer) HostKeyTypes() []string {
	var types []string
	for typ := range s.hostKeys {
		types = append(types, typ)
	}
	sort.Strings(types)
	return types
}

// KnownHostsLine is the known_hosts line for the server's host key of type typ
// (ssh-ed25519, ecdsa-sha2-nistp256), as ssh-keyscan would print it.
func (s *SSHServer) KnownHostsLine(typ string) string {
	key, ok := s.hostKeys[typ]
	if !ok {
		panic(fmt.Sprintf("sshd has no %s host key", typ))
	}
	return s.KnownHostsPattern() + " " + key
}

// KnownHostsPattern is the server's name in a known_hosts file: [127.0.0.1]:PORT.
func (s *SSHServer) KnownHostsPattern() string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return "[" + host + "]:" + port
}

// Fetches is how many object transfers (packs) the server has sent.
func (s *SSHServer) Fetches() int { return s.packs.packs() }

// Transfers are the packs the server has sent, oldest first, with their object
// counts and sizes.
func (s *SSHServer) Transfers() []Transfer { return s.packs.transfers() }

// Log is what sshd has logged, for failure messages.
func (s *SSHServer) Log() string { return s.log.String() }

// WriteKnownHosts writes a known_hosts file of lines and returns its path.
func WriteKnownHosts(t testing.TB, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, path, strings.Join(lines, "\n")+"\n", 0o644)
	return path
}

// StartSSHAgent runs ssh-agent holding key until the test ends and returns its
// socket, what SSH_AUTH_SOCK names.
func StartSSHAgent(t testing.TB, key SSHKey) string {
	t.Helper()
	RequireSSHD(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		Unavailable(t, "ssh-agent: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("ssh-agent exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent: no socket after 10s:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", key.PrivateFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	return sock
}

package testenv

import (
	"crypto/subtle"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// GitHTTPServer serves the repositories in one directory over git's smart HTTP
// protocol on 127.0.0.1, through the real `git http-backend`, as a git host would.
// With a user set it answers 401 to requests without that user and password; with
// TLS it serves https with a certificate from a CA made for the test.
type GitHTTPServer struct {
	// URL is the server's base URL, without credentials: http://127.0.0.1:PORT, or
	// https:// with TLS.
	URL string
	// CA signed the server's certificate (with TLS; nil without): its CertFile is
	// what --git-ca-file takes.
	CA *TestCA

	user     atomic.Pointer[[2]string]
	fail     atomic.Int64
	requests atomic.Int64
	packs    packCounter
}

// GitHTTPOptions configures ServeGitHTTP. The zero value serves without
// authentication.
type GitHTTPOptions struct {
	// User and Password are required by HTTP basic authentication when User is set.
	User, Password string
	// TLS serves https with a certificate signed by a CA made for the test.
	TLS bool
	// EchoCredentials makes a 401 answer quote the user and password it was sent, as
	// a careless server might: redaction must hold against what a server says.
	EchoCredentials bool
}

// RequireGitHTTPBackend returns the path of git's http-backend, or skips the test
// (fails it in CI) when git is not installed.
func RequireGitHTTPBackend(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		Unavailable(t, "git is not installed: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		Unavailable(t, "git http-backend not found: %v", err)
	}
	return backend
}

// ServeGitHTTP serves the repositories under root (each a directory holding a
// repository with a worktree or a bare one) until the test ends.
func ServeGitHTTP(t testing.TB, root string, opts GitHTTPOptions) *GitHTTPServer {
	t.Helper()
	backend := RequireGitHTTPBackend(t)
	s := &GitHTTPServer{packs: newPackCounter(t)}
	s.SetPassword(opts.User, opts.Password)
	cgiHandler := &cgi.Handler{
		Path: backend,
		// HOME and GIT_CONFIG_NOSYSTEM keep the backend away from the host's git
		// configuration; safe.directory because the test owns the files it serves.
		Env: []string{
			"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", s.packs.configParameters(),
		},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if !s.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			msg := "authentication required"
			if user, password, ok := r.BasicAuth(); ok && opts.EchoCredentials {
				msg += ": user " + user + " with password " + password + " is not allowed"
			}
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		if s.fail.Load() > 0 && s.fail.Add(-1) >= 0 {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	if opts.TLS {
		s.CA = NewTestCA(t)
		srv.TLS = s.CA.ServerConfig(t)
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// SetPassword changes the user and password the server wants (a rotated token); an
// empty user lets every request in.
func (s *GitHTTPServer) SetPassword(user, password string) {
	s.user.Store(&[2]string{user, password})
}

func (s *GitHTTPServer) authorized(r *http.Request) bool {
	want := s.user.Load()
	if want[0] == "" {
		return true
	}
	user, password, ok := r.BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(user), []byte(want[0])) == 1 &&
		subtle.ConstantTimeCompare([]byte(password), []byte(want[1])) == 1
}

// Fetches is how many object transfers (packs) the server has sent: a poll that
// only lists refs adds none.
func (s *GitHTTPServer) Fetches() int { return s.packs.packs() }

// Transfers are the packs the server has sent, oldest first, with their object
// counts and sizes.
func (s *GitHTTPServer) Transfers() []Transfer { return s.packs.transfers() }

// RepoURL is the URL of the repository in directory name under root, without
// credentials.
func (s *GitHTTPServer) RepoURL(name string) string { return s.URL + "/" + name }

// AuthRepoURL is RepoURL with the server's user and password in it, the way an
// operator puts a token in a repository URL.
func (s *GitHTTPServer) AuthRepoURL(name string) string {
	u, err := url.Parse(s.RepoURL(name))
	if err != nil {
		panic(err) // built from httptest's URL: cannot happen
	}
	want := s.user.Load()
	u.User = url.UserPassword(want[0], want[1])
	return u.String()
}

// FailNext makes the next n authorised requests fail with 500 Internal Server Error.
func (s *GitHTTPServer) FailNext(n int) { s.fail.Store(int64(n)) }

// Requests is how many requests the server has received.
func (s *GitHTTPServer) Requests() int { return int(s.requests.Load()) }

// SilentServer is a TCP server on 127.0.0.1 that accepts every connection and then
// never writes a byte: a git or HTTP server that hangs. It stands in for a remote
// that blocks a client which has no deadline.
type SilentServer struct {
	// Addr is host:port.
	Addr string

	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// ServeSilent starts a SilentServer that stops when the test ends.
func ServeSilent(t testing.TB) *SilentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("silent server: listen: %v", err)
	}
	s := &SilentServer{Addr: ln.Addr().String(), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			// Read and discard what the client sends, so its writes never block:
			// only the answer it waits for never comes.
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

// Accepted is how many connections the server has accepted so far.
func (s *SilentServer) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// UnansweredAddr returns a 127.0.0.1 address where a TCP connect never completes, as
// with a host whose firewall drops packets: a listener whose accept queue is full and
// that never accepts, so the kernel drops every new SYN. It lasts until the test ends.
func UnansweredAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("unanswered address: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("unanswered address: bind: %v", err)
	}
	// A backlog of 0 still queues one connection; fill the queue.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("unanswered address: listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("unanswered address: getsockname: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return addr // the queue is full
			}
			t.Fatalf("unanswered address: fill the accept queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if i == 16 {
			t.Fatalf("unanswered address: %s still accepts connections after %d", addr, i+1)
		}
	}
}

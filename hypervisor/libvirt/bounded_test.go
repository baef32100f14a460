package libvirt

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor/hypervisortest"
	"github.com/drover-dev/drover/testenv"
)

func TestBoundedReturnsWhenCtxEnds(t *testing.T) {
	release := make(chan struct{})
	abandoned := make(chan int, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		_, err := bounded(ctx, nil, func() (int, error) { close(started); <-release; return 7, nil }, func(v int) { abandoned <- v })
		done <- err
	}()
	<-started
	cancel()
	// The call is still blocked: bounded must have returned anyway.
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("bounded with a blocked call and a canceled ctx: want context.Canceled, got %v", err)
	}
	close(release)
	if got := <-abandoned; got != 7 {
		t.Fatalf("abandon: want the late result 7, got %d", got)
	}
}

func TestBoundedReturnsResult(t *testing.T) {
	v, err := bounded(t.Context(), nil, func() (string, error) { return "ok", nil }, nil)
	if v != "ok" || err != nil {
		t.Fatalf("bounded: want ok, nil, got %q, %v", v, err)
	}
	want := errors.New("boom")
	if err := bounded0(t.Context(), nil, func() error { return want }); !errors.Is(err, want) {
		t.Fatalf("bounded0: want %v, got %v", want, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	if err := bounded0(ctx, nil, func() error { called = true; return nil }); !errors.Is(err, context.Canceled) || called {
		t.Fatalf("bounded0 on a canceled ctx: want context.Canceled without calling, got %v (called %v)", err, called)
	}
}

// rngRace is the error libvirt 9.0 returns when two validations load domain.rng at once.
var rngRace = libvirt.Error{
	Code:    libvirt.ERR_INTERNAL_ERROR,
	Domain:  libvirt.FROM_XML,
	Message: "internal error: Unable to parse RNG /usr/share/libvirt/schemas/domain.rng: Error type 'unsignedInt' is not exported",
	Level:   libvirt.ERR_ERROR,
}

func TestDefineRetriesSchemaLoadRace(t *testing.T) {
	other := libvirt.Error{Code: libvirt.ERR_XML_DETAIL, Message: "XML error: bad memory"}
	tests := []struct {
		name      string
		errs      []error // what each attempt returns, then success
		wantErr   error
		wantCalls int
	}{
		{"no error", nil, nil, 1},
		{"race twice, then defined", []error{rngRace, rngRace}, nil, 3},
		{"race every time: bounded", []error{rngRace, rngRace, rngRace, rngRace, rngRace, rngRace}, rngRace, maxDefineAttempts},
		{"another error is not retried", []error{other}, other, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			_, err := defineRetrying(t.Context(), &mu, func() (*libvirt.Domain, error) {
				calls++
				if mu.TryLock() {
					t.Error("define ran without holding the lock")
					mu.Unlock()
				}
				if calls <= len(tt.errs) {
					return nil, tt.errs[calls-1]
				}
				return nil, nil
			}, func(int, error) {})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("want %v, got %v", tt.wantErr, err)
			}
			if calls != tt.wantCalls {
				t.Errorf("attempts: want %d, got %d", tt.wantCalls, calls)
			}
		})
	}
}

func TestIsSystemURI(t *testing.T) {
	for uri, want := range map[string]bool{
		"qemu:///system":                          true,
		"qemu+unix:///system?socket=/run/x.sock":  true,
		"qemu:///session":                         false,
		"qemu+ssh://host/system":                  false,
		"test:///default":                         false,
		"qemu+unix:///session?socket=/run/x.sock": false,
	} {
		if got := isSystemURI(uri); got != want {
			t.Errorf("isSystemURI(%q): want %v, got %v", uri, want, got)
		}
	}
}

func TestQEMUConfUser(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, conf, want string }{
		{"commented out: the default", "#user = \"qemu\"\n", "libvirt-qemu"},
		{"set", "# the user\nuser = \"qemu\"  # trailing\ngroup = \"kvm\"\n", "qemu"},
		{"numeric", "user = \"+107\"\n", "+107"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		if err := os.WriteFile(p, []byte(tt.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := qemuConfUser(p); got != tt.want {
			t.Errorf("%s: want %q, got %q", tt.name, tt.want, got)
		}
	}
	if got := qemuConfUser(filepath.Join(dir, "missing")); got != defaultQEMUUser {
		t.Errorf("no qemu.conf: want %q, got %q", defaultQEMUUser, got)
	}
}

// wedgeProxy stands between Drover and the real libvirtd socket and, once frozen,
// forwards nothing in either direction: to Drover, a libvirtd that stopped answering
// (as under SIGSTOP), without touching the shared daemon.
type wedgeProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen chan struct{} // non-nil while frozen; closed on thaw
	conns  []net.Conn
}

func startWedgeProxy(t *testing.T, target string) *wedgeProxy {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "libvirt-sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &wedgeProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.thaw()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.handle(c)
		}
	}()
	return p
}

func (p *wedgeProxy) socket() string { return p.ln.Addr().String() }

func (p *wedgeProxy) handle(c net.Conn) {
	u, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, u)
	p.mu.Unlock()
	go p.pipe(u, c)
	p.pipe(c, u)
}

func (p *wedgeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if frozen != nil {
				<-frozen
				return // thawed: this connection is stale
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *wedgeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = make(chan struct{})
	}
}

// thaw closes every connection made so far, as a libvirtd restart would, and
// forwards again.
func (p *wedgeProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// callReturns runs f and fails the test if it has not returned within limit: a hang
// detector, far above any expected duration, not a timing assertion.
func callReturns(t *testing.T, what string, limit time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s: still blocked after %v with libvirtd not answering", what, limit)
		return nil
	}
}

func TestRealWedgedLibvirtdDoesNotHang(t *testing.T) {
	testenv.Libvirt(t)
	proxy := startWedgeProxy(t, "/var/run/libvirt/libvirt-sock")
	uri := "qemu+unix:///system?socket=" + proxy.socket()
	stateDir := reachableTempDir(t)

	d, err := New(t.Context(), Config{URI: uri, StateDir: stateDir}, hypervisortest.Logger(t))
	if err != nil {
		t.Fatalf("New(%s): %v", uri, err)
	}
	if _, err := d.List(t.Context()); err != nil {
		t.Fatalf("List before the freeze: %v", err)
	}

	proxy.freeze()
	// A call gives up when its ctx ends, although libvirt's own call cannot.
	err = callReturns(t, "List with a 2s deadline", time.Minute, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := d.List(ctx)
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("List on a wedged libvirtd: want context.DeadlineExceeded, got %v", err)
	}
	// Keepalive gives up on the wedged connection, so the driver will reconnect.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d.connMu.Lock()
		alive, err := d.conn.IsAlive()
		d.connMu.Unlock()
		if err != nil || !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection to a wedged libvirtd still alive after 2 minutes: keepalive is not on")
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Starting against a wedged libvirtd does not hang either.
	err = callReturns(t, "New with a 2s deadline", time.Minute, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		d2, err := New(ctx, Config{URI: uri, StateDir: stateDir}, hypervisortest.Logger(t))
		if err == nil {
			d2.Close()
		}
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New on a wedged libvirtd: want context.DeadlineExceeded, got %v", err)
	}

	// Once libvirtd answers again, the driver reconnects by itself.
	proxy.thaw()
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := d.List(t.Context()); err != nil {
		t.Fatalf("List after libvirtd answers again: %v", err)
	}
}

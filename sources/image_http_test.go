package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// hostURL is u with its host name replaced, keeping the port.
func hostURL(t *testing.T, u, host string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	p.Host = net.JoinHostPort(host, p.Port())
	return p.String()
}

func TestImageHTTPLoopbackRefused(t *testing.T) {
	content := []byte("image on loopback")
	srv := newImageServer(t, content)
	a := Artifact{URL: srv.URL + "/web.qcow2", SHA256: digestOf(content)}

	c, dir := newCache(t, ImageCacheConfig{})
	_, err := c.Get(context.Background(), a)
	assertRefusedUnread(t, err, nil, "127.0.0.1", "loopback", "--image-allow-host")
	// A name that resolves to loopback is refused where it is resolved, at the dial.
	_, err = c.Get(context.Background(), Artifact{URL: hostURL(t, a.URL, "localhost"), SHA256: a.SHA256})
	assertRefusedUnread(t, err, nil, "loopback")
	if n := srv.count("/web.qcow2"); n != 0 {
		t.Errorf("the refused server got %d requests", n)
	}
	assertOnlyCached(t, dir)

	for _, allow := range []string{"127.0.0.1", "127.0.0.0/8", "localhost"} {
		c, dir := newCache(t, ImageCacheConfig{AllowHosts: []string{allow}})
		u := a.URL
		if allow == "localhost" {
			u = hostURL(t, u, "localhost")
		}
		if _, err := c.Get(context.Background(), Artifact{URL: u, SHA256: a.SHA256}); err != nil {
			t.Errorf("Get with --image-allow-host %s: %v", allow, err)
		}
		assertOnlyCached(t, dir, a.SHA256)
	}
}

func TestImageHTTPRedirects(t *testing.T) {
	content := []byte("redirected image")
	target := newImageServer(t, content)
	var hops atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, target.URL+"/img", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		case "/loop":
			hops.Add(1)
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/allowed":
			// Same name as the front server: allowed, so followed.
			http.Redirect(w, r, hostURL(t, target.URL, "localhost")+"/img", http.StatusFound)
		}
	}))
	t.Cleanup(front.Close)
	front.URL = hostURL(t, front.URL, "localhost")

	// Only the name localhost is allowed: the address 127.0.0.1 is not.
	c, dir := newCache(t, ImageCacheConfig{AllowHosts: []string{"localhost"}})
	for _, tc := range []struct{ path, want string }{
		{"/to-loopback", "loopback"},
		{"/to-metadata", "link-local"},
		{"/to-file", "file"},
		{"/loop", "redirects"},
	} {
		_, err := c.Get(context.Background(), Artifact{URL: front.URL + tc.path, SHA256: digestOf(content)})
		assertRefusedUnread(t, err, nil, tc.want)
	}
	if n := target.count("/img"); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
	if n := hops.Load(); n != maxImageRedirects+1 {
		t.Errorf("followed %d redirects of a loop, want %d", n-1, maxImageRedirects)
	}
	assertOnlyCached(t, dir)
	if _, err := c.Get(context.Background(), Artifact{URL: front.URL + "/allowed", SHA256: digestOf(content)}); err != nil {
		t.Errorf("Get through an allowed redirect: %v", err)
	}
	assertOnlyCached(t, dir, digestOf(content))
}

func TestImageHTTPMetadataNeverDialled(t *testing.T) {
	c, dir := newCache(t, ImageCacheConfig{})
	var attempts []string
	var mu sync.Mutex
	c.policy.connecting = func(network, address string) error {
		mu.Lock()
		attempts = append(attempts, address)
		mu.Unlock()
		return errors.New("test: no connection may be made")
	}
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/iam/", "http://[fe80::1]/x", "http://[::ffff:169.254.169.254]/x",
		"http://[fd00:ec2::254]/x", "http://0.0.0.0/x", "http://[::1]/x", "http://224.0.0.1/x"} {
		_, err := c.Get(context.Background(), Artifact{URL: u, SHA256: digestOf(nil)})
		assertRefusedUnread(t, err, nil)
	}
	// The dialer itself refuses, whatever name led to the address (DNS rebinding).
	for _, addr := range []string{"169.254.169.254:80", "127.0.0.1:8500", "[::1]:8500", "0.0.0.0:80"} {
		conn, err := c.policy.dial(context.Background(), "tcp", addr)
		if err == nil {
			conn.Close()
		}
		var ae *addrError
		if !errors.As(err, &ae) {
			t.Errorf("dial %s = %v, want a refusal", addr, err)
		}
	}
	if len(attempts) != 0 {
		t.Errorf("connections were attempted to %v", attempts)
	}
	assertOnlyCached(t, dir)
}

func TestImageHTTPTooBig(t *testing.T) {
	const max = 1024
	var streamed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/declared":
			// Says how big it is, then sends nothing until the client goes: a cache that
			// reads the body before looking at the length would hang here.
			w.Header().Set("Content-Length", fmt.Sprint(max*1000))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/endless":
			// No Content-Length, and no end.
			buf := make([]byte, 512)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
				streamed.Add(int64(len(buf)))
			}
		}
	}))
	t.Cleanup(srv.Close)
	c, dir := newCache(t, ImageCacheConfig{AllowHosts: []string{"127.0.0.1"}, MaxSize: max})
	for _, path := range []string{"/declared", "/endless"} {
		_, err := getOrHang(t, c, Artifact{URL: srv.URL + path, SHA256: digestOf(nil)})
		assertRefusedUnread(t, err, nil, "--image-max-size")
	}
	assertOnlyCached(t, dir)
}

func TestImageHTTPDownloadTimeout(t *testing.T) {
	content := []byte("slow image")
	srv := newImageServer(t, content)
	srv.block = make(chan struct{}) // sends a byte, then nothing
	t.Cleanup(func() { close(srv.block) })
	c, dir := newCache(t, ImageCacheConfig{AllowHosts: []string{"127.0.0.1"}, DownloadTimeout: 200 * time.Millisecond})
	_, err := getOrHang(t, c, Artifact{URL: srv.URL + "/slow", SHA256: digestOf(content)})
	if !errors.Is(err, ErrImageUnavailable) || !strings.Contains(err.Error(), "--image-download-timeout") {
		t.Errorf("Get = %v, want ErrImageUnavailable naming --image-download-timeout", err)
	}
	var ce *ChecksumError
	if errors.As(err, &ce) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrImageRefused) {
		t.Errorf("Get = %v: a slow download must not read as a checksum verdict, the caller's deadline or a refusal", err)
	}
	assertOnlyCached(t, dir)
}

func TestImageHTTPInterruptedRetried(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 1000)
	var mode atomic.Value
	mode.Store("cut")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "cut":
			w.Header().Set("Content-Length", fmt.Sprint(len(content)))
			w.WriteHeader(http.StatusOK)
			w.Write(content[:len(content)/2])
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		case "503":
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Write(content)
		}
	}))
	t.Cleanup(srv.Close)
	c, dir := newCache(t, allowLocal())
	a := Artifact{URL: srv.URL + "/disk.raw", SHA256: digestOf(content)}
	for _, m := range []string{"cut", "503"} {
		mode.Store(m)
		_, err := c.Get(context.Background(), a)
		var ce *ChecksumError
		if !errors.Is(err, ErrImageUnavailable) || errors.As(err, &ce) || errors.Is(err, ErrImageRefused) {
			t.Errorf("%s: Get = %v, want ErrImageUnavailable and nothing else", m, err)
		}
		assertOnlyCached(t, dir)
	}
	mode.Store("ok")
	if _, err := c.Get(context.Background(), a); err != nil {
		t.Errorf("Get once the server is fixed: %v", err)
	}
	assertOnlyCached(t, dir, a.SHA256)
}

func TestImageHTTPCredentialsNeverShown(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 64<<10)
	srv := newImageServer(t, content)
	var logs testenv.SyncBuffer
	c, err := NewImageCache(ImageCacheConfig{Dir: t.TempDir(), AllowHosts: []string{"127.0.0.1"}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.policy.connecting = loopbackOnly(t)
	c.progressEvery = 0 // log every read
	u, _ := url.Parse(srv.URL + "/disk.raw?token=tok-in-query")
	u.User = url.UserPassword("alice", "pw-in-userinfo")
	secrets := []string{"pw-in-userinfo", "tok-in-query"}

	_, err = c.Get(context.Background(), Artifact{URL: u.String(), SHA256: digestOf([]byte("other"))})
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Want != digestOf([]byte("other")) || ce.Got != digestOf(content) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("Get = %v, want a checksum error naming the URL and both digests", err)
	}
	if _, err := c.Get(context.Background(), Artifact{URL: u.String(), SHA256: digestOf(content)}); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !strings.Contains(logs.String(), "downloading image") {
		t.Errorf("no progress was logged:\n%s", logs.String())
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) || strings.Contains(ce.URL, s) || strings.Contains(logs.String(), s) {
			t.Errorf("secret %q shown in the error %q or the logs:\n%s", s, err, logs.String())
		}
	}
}

func TestImageAllowHostsParsed(t *testing.T) {
	for _, bad := range []string{"", "http://images.lan", "images.lan:80", "10.0.0.0/33"} {
		if _, err := NewImageCache(ImageCacheConfig{Dir: t.TempDir(), AllowHosts: []string{bad}}, nil); err == nil {
			t.Errorf("AllowHosts %q accepted, want an error", bad)
		}
	}
	if _, err := NewImageCache(ImageCacheConfig{Dir: t.TempDir(), AllowHosts: []string{"images.lan", "Mirror.LAN.", "127.0.0.1", "::1", "10.1.0.0/16"}}, nil); err != nil {
		t.Errorf("valid AllowHosts refused: %v", err)
	}
}

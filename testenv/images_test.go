package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGuestImagesBoot boots one guest from each initrd in parallel, as Drover would with
// network mode user: the healthy one must serve its version on /healthz, report on /reach
// that it reached a host listener (plain QEMU here, whose user network lets the guest
// reach the host, so the probe the isolation tests rely on can tell "reached") and power
// off on an ACPI power button; the unhealthy one must boot and never serve.
func TestGuestImagesBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		Unavailable(t, "qemu-system-x86_64 (install qemu-system-x86): %v", err)
	}
	imgs := Images(t)
	const version = "1.4.2-test"
	// Generous for TCG on two shared cores; a healthy guest is typically up in ~4 s.
	const deadline = 90 * time.Second

	t.Run("healthy", func(t *testing.T) {
		t.Parallel()
		host, accepted := reachListener(t)
		g := bootGuest(t, imgs.Kernel, imgs.Initrd, GuestCmdline(version)+" "+GuestReach(fmt.Sprintf("10.0.2.2:%d", host)))
		took, err := waitHealthy(t.Context(), g.url, version, deadline)
		if err != nil {
			t.Fatalf("guest never healthy: %v\nconsole:\n%s", err, g.console.String())
		}
		t.Logf("healthy %s after start (accel %s)", took.Round(10*time.Millisecond), g.accel)

		reachURL := strings.TrimSuffix(g.url, "/healthz") + "/reach"
		if err := waitFor(t.Context(), deadline, func() error {
			resp, err := http.Get(reachURL)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != "reached" {
				return fmt.Errorf("want 200 %q, got %d %q", "reached", resp.StatusCode, body)
			}
			return nil
		}); err != nil {
			t.Fatalf("GET /reach of a guest on unrestricted user networking told to reach the host's 127.0.0.1:%d: %v\nconsole:\n%s", host, err, g.console.String())
		}
		if n := accepted(); n == 0 {
			t.Errorf("host listener: want the guest's connection accepted, got none")
		}

		resp, err := http.Get(strings.TrimSuffix(g.url, "/healthz") + "/nope")
		if err != nil {
			t.Fatalf("GET /nope: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /nope: want status 404, got %d", resp.StatusCode)
		}

		start := time.Now()
		if err := qmpPowerdown(t.Context(), g.qmp); err != nil {
			t.Fatalf("system_powerdown: %v", err)
		}
		select {
		case <-g.exited:
			t.Logf("powered off %s after the ACPI power button", time.Since(start).Round(10*time.Millisecond))
		case <-time.After(30 * time.Second):
			t.Fatalf("guest still running 30s after the ACPI power button\nconsole:\n%s", g.console.String())
		}
	})

	t.Run("unhealthy", func(t *testing.T) {
		t.Parallel()
		g := bootGuest(t, imgs.Kernel, imgs.UnhealthyInitrd, GuestCmdline(version))
		// The init prints this once the network is up, at the point the healthy variant
		// starts its server: from then on /healthz must never answer.
		const booted = "drover-guest: unhealthy variant " + version + ", not serving"
		if err := waitFor(t.Context(), deadline, func() error {
			if !strings.Contains(g.console.String(), booted) {
				return errors.New("console has no boot line yet")
			}
			return nil
		}); err != nil {
			t.Fatalf("unhealthy guest did not boot: %v\nconsole:\n%s", err, g.console.String())
		}
		if took, err := waitHealthy(t.Context(), g.url, version, 3*time.Second); err == nil {
			t.Fatalf("unhealthy guest answered /healthz after %s", took)
		}
	})
}

type guest struct {
	url     string
	qmp     string
	accel   string
	console *SyncBuffer
	exited  chan struct{}
}

// bootGuest starts QEMU the way Drover's user-mode network once did (a host port on
// 127.0.0.1 forwarded to GuestPort, nothing restricted) and kills it when the test ends.
func bootGuest(t *testing.T, kernel, initrd File, cmdline string) *guest {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{
		url:     fmt.Sprintf("http://127.0.0.1:%d/healthz", port),
		qmp:     filepath.Join(t.TempDir(), "qmp.sock"),
		accel:   QEMUAccel(),
		console: &SyncBuffer{},
		exited:  make(chan struct{}),
	}
	cmd := exec.Command("qemu-system-x86_64",
		"-accel", g.accel, "-M", "q35", "-m", "256", "-nographic",
		"-kernel", kernel.Path, "-initrd", initrd.Path, "-append", cmdline,
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:%d", port, GuestPort),
		"-device", "virtio-net-pci,netdev=n0",
		"-qmp", "unix:"+g.qmp+",server=on,wait=off",
	)
	cmd.Stdout, cmd.Stderr = g.console, g.console
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		_ = cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-g.exited
	})
	return g
}

// waitHealthy polls url until it answers 200 with body version, returning how long it took.
func waitHealthy(ctx context.Context, url, version string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: time.Second}
	err := waitFor(ctx, limit, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(body) != version {
			return fmt.Errorf("want 200 %q, got %d %q", version, resp.StatusCode, body)
		}
		return nil
	})
	return time.Since(start), err
}

// waitFor polls cond until it returns nil or limit passes, returning its last error.
func waitFor(ctx context.Context, limit time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// qmpPowerdown presses the virtual ACPI power button, as libvirt's shutdown does.
func qmpPowerdown(ctx context.Context, sock string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		return fmt.Errorf("read greeting: %w", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(conn, `{"execute":%q}`+"\n", cmd); err != nil {
			return fmt.Errorf("send %s: %w", cmd, err)
		}
		for { // skip asynchronous events until the command's reply
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("read %s reply: %w", cmd, err)
			}
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct{ Desc string }
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				return fmt.Errorf("decode %s reply %q: %w", cmd, line, err)
			}
			if reply.Error != nil {
				return fmt.Errorf("%s: %s", cmd, reply.Error.Desc)
			}
			if reply.Return != nil {
				break
			}
		}
	}
	return nil
}

// reachListener listens on a free port of 127.0.0.1 and sends every connection the
// line a guest told to reach it looks for; accepted counts the connections.
func reachListener(t *testing.T) (port int, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "drover-reach\n")
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port, func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// TestBuildImagesIdempotent checks a second build rebuilds nothing: same files, same
// bytes, untouched modification times.
func TestBuildImagesIdempotent(t *testing.T) {
	first := Images(t)
	var mtimes []time.Time
	for _, f := range []File{first.Kernel, first.Initrd, first.UnhealthyInitrd} {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != 0o644 {
			t.Errorf("%s: want mode 0644, got %o", f.Path, got)
		}
		mtimes = append(mtimes, st.ModTime())
	}
	second := Images(t)
	if first != second {
		t.Fatalf("second build differs:\nwant %+v\ngot  %+v", first, second)
	}
	for i, f := range []File{second.Kernel, second.Initrd, second.UnhealthyInitrd} {
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !st.ModTime().Equal(mtimes[i]) {
			t.Errorf("%s was rewritten: mtime want %v, got %v", f.Path, mtimes[i], st.ModTime())
		}
	}
	if first.Initrd.SHA256 == first.UnhealthyInitrd.SHA256 {
		t.Errorf("healthy and unhealthy initrds are identical (%s)", first.Initrd.SHA256)
	}
	if !strings.HasPrefix(first.Kernel.URL(), "file:///") {
		t.Errorf("kernel URL: want a file:/// URL, got %q", first.Kernel.URL())
	}
}

// TestBuildImagesUnwritableCache checks a cache that cannot be created is an error that
// names the path, not a panic or a half-built cache.
func TestBuildImagesUnwritableCache(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := BuildImages(t.Context(), notDir, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), notDir) {
		t.Fatalf("BuildImages(cache under a file): want an error naming %s, got %v", notDir, err)
	}
}

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		name, out, want string
		wantErr         bool
	}{
		{"debian 12", "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n", "6.1.0-56-cloud-amd64", false},
		{"no lists", "E: No packages found\n", "", true},
		{"other flavour", "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "", true},
		{"injection", "  Depends: linux-image-6.1.0-56-cloud-amd64;rm\n", "", true},
		{"empty", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKernelDepends([]byte(tt.out))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseKernelDepends(%q): want %q (error %v), got %q (%v)", tt.out, tt.want, tt.wantErr, got, err)
			}
		})
	}
}

func TestCheckStatic(t *testing.T) {
	tests := []struct {
		path    string
		wantErr string
	}{
		{busyboxPath, ""},
		{"/bin/ls", "dynamically linked"},
		{"/etc/hostname", "inspect"},
		{"/nonexistent", "inspect"},
	}
	for _, tt := range tests {
		if _, err := os.Stat(tt.path); err != nil && tt.path != "/nonexistent" {
			t.Logf("skipping %s: %v", tt.path, err)
			continue
		}
		err := checkStatic(tt.path)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("checkStatic(%s): want nil, got %v", tt.path, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("checkStatic(%s): want error containing %q, got %v", tt.path, tt.wantErr, err)
		}
	}
}

func TestGuestCmdline(t *testing.T) {
	tests := []struct{ version, want string }{
		{"1.0.0", "console=ttyS0 quiet drover.version=1.0.0"},
		{"", "console=ttyS0 quiet drover.version="},
	}
	for _, tt := range tests {
		if got := GuestCmdline(tt.version); got != tt.want {
			t.Errorf("GuestCmdline(%q): want %q, got %q", tt.version, tt.want, got)
		}
	}
}

func TestModuleName(t *testing.T) {
	tests := []struct {
		base, want string
		compressed bool
	}{
		{"virtio_net.ko", "virtio_net", false},
		{"virtio_net.ko.xz", "virtio_net", true},
		{"modules.dep", "", false},
	}
	for _, tt := range tests {
		got, compressed := moduleName(tt.base)
		if got != tt.want || compressed != tt.compressed {
			t.Errorf("moduleName(%q): want %q,%v, got %q,%v", tt.base, tt.want, tt.compressed, got, compressed)
		}
	}
}

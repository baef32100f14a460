package testenv

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func consulKV(t *testing.T, method, addr, key, value string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s kv %s on %s: %v", method, key, addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestConsulAgentRestartLosesState(t *testing.T) {
	a := Consul(t)
	if code, body := consulKV(t, http.MethodPut, a.Addr, "drover/probe", "1"); code != http.StatusOK {
		t.Fatalf("put kv: want 200, got %d %s", code, body)
	}
	if code, _ := consulKV(t, http.MethodGet, a.Addr, "drover/probe", ""); code != http.StatusOK {
		t.Fatalf("get kv before restart: want 200, got %d", code)
	}
	addr := a.Addr
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if a.Addr != addr {
		t.Errorf("address after restart: want %s, got %s", addr, a.Addr)
	}
	if code, _ := consulKV(t, http.MethodGet, a.Addr, "drover/probe", ""); code != http.StatusNotFound {
		t.Errorf("get kv after restart: want 404 (dev mode state lost), got %d", code)
	}
}

func TestConsulAgentStop(t *testing.T) {
	a := Consul(t)
	if !a.Running() {
		t.Fatal("agent not running after start")
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if a.Running() {
		t.Error("agent still running after Stop")
	}
	if err := a.Stop(); err != nil {
		t.Errorf("second stop: want nil, got %v", err)
	}
	conn, err := net.DialTimeout("tcp", a.Addr, time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("dial %s after stop: want refused, got a connection", a.Addr)
	}
}

func TestConsulAgentsDoNotCollide(t *testing.T) {
	a, b := Consul(t), Consul(t)
	if a.Ports == b.Ports {
		t.Fatalf("two agents share ports: %+v", a.Ports)
	}
	for _, p := range []int{8300, 8301, 8302, 8500, 8502, 8503, 8600} {
		for _, ag := range []*ConsulAgent{a, b} {
			pp := ag.Ports
			for _, used := range []int{pp.HTTP, pp.DNS, pp.SerfLAN, pp.SerfWAN, pp.Server, pp.GRPC} {
				if used == p {
					t.Errorf("agent %s uses default port %d", ag.Addr, p)
				}
			}
		}
	}
	consulKV(t, http.MethodPut, a.Addr, "only-in-a", "1")
	if code, _ := consulKV(t, http.MethodGet, b.Addr, "only-in-a", ""); code != http.StatusNotFound {
		t.Errorf("agents share state: key written to %s visible on %s (status %d)", a.Addr, b.Addr, code)
	}
}

func TestStartConsulErrors(t *testing.T) {
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(consulTestLog{t}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := ConsulBinary(ctx, cache, log)
	if err != nil {
		Unavailable(t, "consul agent: %v", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	notExec := filepath.Join(t.TempDir(), "consul-agent")
	if err := os.WriteFile(notExec, []byte("not a binary"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		bin     string
		port    int
		wantErr string
	}{
		{"missing binary", filepath.Join(t.TempDir(), "nope"), 0, "no such file"},
		{"not executable", notExec, 0, "permission denied"},
		{"http port taken", bin, busyPort, "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			a, err := StartConsul(ctx, tt.bin, ConsulOptions{Dir: t.TempDir(), HTTPPort: tt.port}, log)
			if err == nil {
				a.Stop()
				t.Fatalf("want error containing %q, got an agent at %s", tt.wantErr, a.Addr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("want error containing %q, got %v", tt.wantErr, err)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tt.port)) && tt.port != 0 {
				t.Errorf("error does not name port %d: %v", tt.port, err)
			}
		})
	}
}

func TestConsulBinaryIsCached(t *testing.T) {
	cache, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(consulTestLog{t}, nil))
	ctx := context.Background()
	first, err := ConsulBinary(ctx, cache, log)
	if err != nil {
		Unavailable(t, "consul agent: %v", err)
	}
	before, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := ConsulBinary(ctx, cache, log)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	after, err := os.Stat(second)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("second call rebuilt: want %s (%v), got %s (%v)", first, before.ModTime(), second, after.ModTime())
	}
}

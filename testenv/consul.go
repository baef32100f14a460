package testenv

import (
	"bytes"
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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// consulStartTimeout bounds how long a dev agent may take to elect itself leader and
// register its own node; a healthy one needs about a second.
const consulStartTimeout = 60 * time.Second

// consulStopGrace is how long the agent gets to exit on SIGTERM before it is killed.
const consulStopGrace = 10 * time.Second

// ConsulBinary returns the path of the Consul agent under cacheDir/bin, building it from
// the testenv/consulagent module when it is missing. Concurrent callers (test binaries of
// several packages) are serialised with a file lock so the build runs once.
func ConsulBinary(ctx context.Context, cacheDir string, log *slog.Logger) (string, error) {
	binDir := filepath.Join(cacheDir, "bin")
	bin := filepath.Join(binDir, "consul-agent")
	if isConsulBinary(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("build consul agent: %w", err)
	}
	unlock, err := lockConsulBuild(filepath.Join(binDir, "consul-agent.lock"))
	if err != nil {
		return "", fmt.Errorf("build consul agent: %w", err)
	}
	defer unlock()
	if isConsulBinary(bin) { // another process built it while we waited for the lock
		return bin, nil
	}

	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("build consul agent: %w", err)
	}
	src := filepath.Join(root, "testenv", "consulagent")
	tmp := bin + ".tmp"
	log.Info("building consul agent (first build takes minutes)", "src", src, "out", bin)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, ".")
	cmd.Dir = src
	// The agent module is outside Drover's module and has no go.work: -mod=mod lets the
	// build fill in go.sum entries a fresh module cache is missing.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("build consul agent in %s: %w\n%s", src, err, consulTail(out, 4000))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("build consul agent: %w", err)
	}
	log.Info("built consul agent", "out", bin, "took", time.Since(start).Round(time.Millisecond))
	return bin, nil
}

func isConsulBinary(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func lockConsulBuild(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// ConsulOptions configures StartConsul.
type ConsulOptions struct {
	// Dir holds the agent's log; empty means a new temporary directory.
	Dir string
	// HTTPPort is the HTTP API port on 127.0.0.1; 0 picks a free one.
	HTTPPort int
	// LogFile receives the agent's output; empty means Dir/consul.log.
	LogFile string
}

// ConsulPorts are the loopback ports an agent listens on. All are explicit so a test's
// agent never collides with a user's agent on the default ports.
type ConsulPorts struct {
	HTTP, DNS, SerfLAN, SerfWAN, Server, GRPC int
}

// ConsulAgent is a Consul agent in dev mode on 127.0.0.1. Dev mode keeps all state in
// memory, so Restart yields an agent that has forgotten every registration — the same
// as a Consul server that lost its state.
type ConsulAgent struct {
	// Addr is the HTTP API address, 127.0.0.1:<port>.
	Addr string
	// DataDir is the agent's working directory (its log lives there); Consul's own
	// state is in memory.
	DataDir string
	// LogFile holds the agent's output across restarts.
	LogFile string
	Ports   ConsulPorts

	bin string
	log *slog.Logger

	mu   sync.Mutex
	proc *consulProc
}

type consulProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// StartConsul starts a dev agent and returns once it is its own leader and has
// registered its node, or an error (with the tail of its log) when it does not by ctx's
// deadline or a minute, whichever is first.
func StartConsul(ctx context.Context, bin string, opts ConsulOptions, log *slog.Logger) (*ConsulAgent, error) {
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "drover-consul-")
		if err != nil {
			return nil, fmt.Errorf("start consul: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start consul: %w", err)
	}
	logFile := opts.LogFile
	if logFile == "" {
		logFile = filepath.Join(dir, "consul.log")
	}

	// Free ports are found by binding and releasing them, so another process can take
	// one before the agent binds it; a few attempts with fresh ports cover that race.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := pickConsulPorts(opts.HTTPPort)
		if err != nil {
			return nil, fmt.Errorf("start consul: %w", err)
		}
		a := &ConsulAgent{
			Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.HTTP)),
			DataDir: dir,
			LogFile: logFile,
			Ports:   ports,
			bin:     bin,
			log:     log,
		}
		err = a.start(ctx)
		if err == nil {
			return a, nil
		}
		lastErr = err
		// A port the caller chose is not ours to replace; only picked ones are retried.
		var inUse *portInUseError
		if !errors.As(err, &inUse) || (opts.HTTPPort != 0 && inUse.port == opts.HTTPPort) || ctx.Err() != nil {
			break
		}
		log.Warn("consul agent port taken, retrying with other ports", "port", inUse.port)
	}
	return nil, lastErr
}

// portInUseError is a start that failed because another process holds one of the
// agent's ports.
type portInUseError struct{ port int }

func (e *portInUseError) Error() string {
	return fmt.Sprintf("port %d already in use", e.port)
}

func pickConsulPorts(httpPort int) (ConsulPorts, error) {
	var p ConsulPorts
	fields := []*int{&p.DNS, &p.SerfLAN, &p.SerfWAN, &p.Server, &p.GRPC}
	if httpPort == 0 {
		fields = append(fields, &p.HTTP)
	} else {
		p.HTTP = httpPort
	}
	// Hold every listener until all are chosen so no two fields get the same port.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, f := range fields {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return p, fmt.Errorf("pick free port: %w", err)
		}
		held = append(held, l)
		*f = l.Addr().(*net.TCPAddr).Port
	}
	return p, nil
}

func (a *ConsulAgent) args() []string {
	p := a.Ports
	return []string{
		"-dev",
		"-node", "drover-test-" + strconv.Itoa(p.HTTP),
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-log-level", "info",
		"-http-port", strconv.Itoa(p.HTTP),
		"-https-port", "-1",
		"-dns-port", strconv.Itoa(p.DNS),
		"-serf-lan-port", strconv.Itoa(p.SerfLAN),
		"-serf-wan-port", strconv.Itoa(p.SerfWAN),
		"-server-port", strconv.Itoa(p.Server),
		"-grpc-port", strconv.Itoa(p.GRPC),
		"-grpc-tls-port", "-1",
	}
}

func (a *ConsulAgent) start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		select {
		case <-a.proc.done:
		default:
			return fmt.Errorf("start consul %s: already running", a.Addr)
		}
	}
	logf, err := os.OpenFile(a.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start consul %s: %w", a.Addr, err)
	}
	defer logf.Close() // the child has its own descriptor
	offset, _ := logf.Seek(0, io.SeekEnd)

	started := time.Now()
	cmd := exec.Command(a.bin, a.args()...)
	cmd.Dir = a.DataDir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// An agent must not outlive a test binary that was killed before its cleanups ran.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul %s: %w", a.Addr, err)
	}
	p := &consulProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	a.proc = p

	if err := a.waitReady(ctx, p, offset); err != nil {
		a.stopLocked()
		out := a.logSince(offset)
		if port := portInUse(out); port != 0 {
			err = fmt.Errorf("%w: %w", &portInUseError{port: port}, err)
		}
		return fmt.Errorf("start consul %s: %w\n--- agent log (%s) ---\n%s", a.Addr, err, a.LogFile, consulTail(out, 4000))
	}
	a.log.Info("consul agent ready", "addr", a.Addr, "pid", cmd.Process.Pid, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

func (a *ConsulAgent) logSince(offset int64) []byte {
	f, err := os.Open(a.LogFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// consulStartFailed is what the agent logs when it gives up starting; it can then
// take seconds to exit, so waiting for the exit alone would be slow.
var consulStartFailed = []byte("[ERROR] agent: Error starting agent")

// portInUse returns the port of a "bind: address already in use" in the agent's log.
func portInUse(log []byte) int {
	m := portInUseRE.FindSubmatch(log)
	if m == nil {
		return 0
	}
	port, _ := strconv.Atoi(string(m[1]))
	return port
}

var portInUseRE = regexp.MustCompile(`listen (?:tcp|udp) [0-9.]+:(\d+): bind: address already in use`)

// waitReady polls until the agent is leader and its node is in the catalog: before
// that, service registrations can fail with "No cluster leader".
func (a *ConsulAgent) waitReady(ctx context.Context, p *consulProc, logOffset int64) error {
	ctx, cancel := context.WithTimeout(ctx, consulStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	node := "drover-test-" + strconv.Itoa(a.Ports.HTTP)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = a.ready(ctx, client, node)
		if last == nil {
			return nil
		}
		if bytes.Contains(a.logSince(logOffset), consulStartFailed) {
			return errors.New("agent failed to start")
		}
		select {
		case <-p.done:
			return fmt.Errorf("agent exited before it was ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("agent not ready (%v): %w", last, ctx.Err())
		case <-tick.C:
		}
	}
}

func (a *ConsulAgent) ready(ctx context.Context, client *http.Client, node string) error {
	var leader string
	if err := consulGetJSON(ctx, client, "http://"+a.Addr+"/v1/status/leader", &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	var n *struct{ Node struct{ Node string } }
	if err := consulGetJSON(ctx, client, "http://"+a.Addr+"/v1/catalog/node/"+node, &n); err != nil {
		return err
	}
	if n == nil || n.Node.Node != node {
		return fmt.Errorf("node %s not in catalog yet", node)
	}
	return nil
}

func consulGetJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

// Stop terminates the agent: SIGTERM, then SIGKILL after a grace period. It returns
// once the process has exited; stopping a stopped agent is a no-op.
func (a *ConsulAgent) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopLocked()
}

func (a *ConsulAgent) stopLocked() error {
	p := a.proc
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(consulStopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("stop consul %s: no exit %s after SIGTERM, killed", a.Addr, consulStopGrace)
}

// Restart stops the agent and starts it again on the same ports, with empty state.
func (a *ConsulAgent) Restart(ctx context.Context) error {
	if err := a.Stop(); err != nil {
		a.log.Warn("consul agent stop before restart", "err", err)
	}
	if err := a.start(ctx); err != nil {
		return fmt.Errorf("restart consul: %w", err)
	}
	return nil
}

// Exited is closed when the current agent process exits, for example when it crashes.
func (a *ConsulAgent) Exited() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return a.proc.done
}

// Running reports whether the agent process is alive.
func (a *ConsulAgent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		return false
	}
	select {
	case <-a.proc.done:
		return false
	default:
		return true
	}
}

// Consul starts a fresh dev agent for the test and stops it at cleanup. The agent
// binary is built into CacheDir on first use; when it cannot be built the test is
// Unavailable.
func Consul(t testing.TB) *ConsulAgent {
	t.Helper()
	log := slog.New(slog.NewTextHandler(consulTestLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cache, err := CacheDir()
	if err != nil {
		Unavailable(t, "consul agent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	bin, err := ConsulBinary(ctx, cache, log)
	if err != nil {
		Unavailable(t, "consul agent: %v", err)
	}
	dir := t.TempDir()
	a, err := StartConsul(ctx, bin, ConsulOptions{Dir: dir}, log)
	if err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("stop consul agent: %v", err)
		}
		if t.Failed() {
			out, _ := os.ReadFile(a.LogFile)
			t.Logf("consul agent log (%s):\n%s", a.LogFile, consulTail(out, 8000))
		}
	})
	return a
}

// consulTestLog sends log lines to t.Log so they show with the test that produced them.
type consulTestLog struct{ t testing.TB }

func (w consulTestLog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func consulTail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return "…" + string(b[len(b)-n:])
}

package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// A network test runs in a network namespace of its own, so that no packet of it can
// leave this machine: the namespace holds a loopback and a bridge at 198.18.0.1/24
// (RFC 2544 benchmarking space), no veth to the host, no NAT and no default route, so
// any other destination is "network unreachable" rather than a SYN sent out of the
// host's default route. Consul, dnsmasq, a libvirtd of the test's own and the guests
// all run inside it.
//
// The namespace is made by running the test again, in a child copy of the test binary
// cloned into a new network and mount namespace: every goroutine and thread of the
// test's Drover is then inside, which setns from one locked thread cannot give a
// whole process. Nothing is named in /run/netns; the namespace goes away with its last
// process, and InNetNS kills what the test left in it.

// Addresses of the test network.
var (
	NetSubnet  = netip.MustParsePrefix("198.18.0.0/24")
	NetGateway = netip.MustParseAddr("198.18.0.1")
)

// NetBridge is the bridge of the test network.
const NetBridge = "drbr0"

// netnsChildEnv, in a child's environment, names the test it runs inside the namespace.
const netnsChildEnv = "DROVER_TESTENV_NETNS_CHILD"

// NetNS is the network namespace a test body runs in.
type NetNS struct {
	// Bridge is NetBridge at NetGateway/24, or "" when the body asked for none (a
	// libvirt network brings its own).
	Bridge string
}

// NetNSOptions shape the namespace.
type NetNSOptions struct {
	// NoBridge leaves the bridge out: a libvirt network makes its own.
	NoBridge bool
	// Timeout bounds the child test (default 10 minutes).
	Timeout time.Duration
}

// InNetNS runs body inside a fresh network namespace (see above). It must be called
// from a top-level test, first thing: the test runs again in the child, where InNetNS
// calls body, and in the parent InNetNS only waits for the child and reports what it
// said. Tests that need it are Unavailable without root or /dev/net/tun.
func InNetNS(t *testing.T, opts NetNSOptions, body func(t *testing.T, ns *NetNS)) {
	t.Helper()
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("InNetNS: call it from a top-level test, not the subtest %s", t.Name())
	}
	if os.Getenv(netnsChildEnv) == t.Name() {
		body(t, setupNetNS(t, opts))
		return
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "network namespace: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		Unavailable(t, "network namespace: /dev/net/tun: %v", err)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	if d, ok := t.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d) - 5*time.Second
	}
	runChild(t, timeout)
}

// runChild runs the current test again in a new network and mount namespace and
// relays its output and outcome.
func runChild(t *testing.T, timeout time.Duration) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	cmd := exec.Command(exe, "-test.run", "^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1",
		"-test.timeout", timeout.String())
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
		// The child dies with the thread that forked it, locked below for the
		// child's lifetime.
		Pdeathsig: syscall.SIGKILL,
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	cmd.Stderr = cmd.Stdout.(io.Writer)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("network namespace: start the test in a child: %v", err)
	}
	ns, nsErr := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	host, _ := os.Readlink("/proc/self/ns/net")
	defer func() {
		if nsErr == nil && ns != host {
			killNetNS(t, ns)
		}
	}()
	var skipped string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	skipRE := regexp.MustCompile(`^\s*--- SKIP: ` + regexp.QuoteMeta(t.Name()) + ` `)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if skipRE.MatchString(line) {
			skipped = line
		}
	}
	werr := cmd.Wait()
	t.Logf("network namespace: child test took %s", time.Since(start).Round(time.Millisecond))
	switch {
	case werr != nil:
		t.Fatalf("network namespace: the test failed inside (%v); its output is above", werr)
	case skipped != "":
		t.Skip("skipped inside the network namespace: " + skipped)
	}
}

// killNetNS kills every process left in the network namespace ns (its /proc/<pid>/ns/net
// link): the test started them all, and daemons (QEMU, libvirtd, dnsmasq) outlive the
// child that started them.
func killNetNS(t *testing.T, ns string) {
	for range 50 {
		entries, _ := os.ReadDir("/proc")
		left := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && link == ns {
				left++
				t.Logf("network namespace: killing leftover process %d (%s)", pid, procComm(pid))
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("network namespace %s: processes still alive after SIGKILL", ns)
}

func procComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// setupNetNS, in the child, checks that it is in a namespace of its own and makes the
// network: lo up and, unless asked not to, the bridge.
func setupNetNS(t *testing.T, opts NetNSOptions) *NetNS {
	t.Helper()
	self, _ := os.Readlink("/proc/self/ns/net")
	pid1, _ := os.Readlink("/proc/1/ns/net")
	if self == "" || self == pid1 {
		t.Fatalf("network namespace: the child runs in the host's network namespace (%s); refusing to touch it", self)
	}
	// Mounts made here (libvirtd's private directories) stay in this namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("network namespace: make mounts private: %v", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatalf("network namespace: lo: %v", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatalf("network namespace: lo up: %v", err)
	}
	ns := &NetNS{}
	if !opts.NoBridge {
		if err := addBridge(NetBridge, netip.PrefixFrom(NetGateway, NetSubnet.Bits())); err != nil {
			t.Fatalf("network namespace: %v", err)
		}
		ns.Bridge = NetBridge
	}
	if err := checkIsolated(); err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	return ns
}

// addBridge makes a bridge with addr, up.
func addBridge(name string, addr netip.Prefix) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	a, err := netlink.ParseAddr(addr.String())
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(br, a); err != nil {
		return fmt.Errorf("bridge %s address %s: %w", name, addr, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge %s up: %w", name, err)
	}
	return nil
}

// checkIsolated verifies what keeps the test's traffic in: no default route, and no
// address outside 127/8 and the test subnet. It inspects the namespace's own tables;
// it never sends a packet to find out.
func checkIsolated() error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" || r.Dst.String() == "::/0" {
			return fmt.Errorf("a default route exists (%s): the test's traffic could leave", r)
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses: %w", err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if !ip.IsLoopback() && !NetSubnet.Contains(ip) {
			return fmt.Errorf("address %s is outside 127/8 and %s", a.IPNet, NetSubnet)
		}
	}
	return nil
}

// InNetNSChild reports whether this process is the child InNetNS runs a test body in.
// Code after InNetNS runs in both; a check of the host's side belongs in the parent.
func InNetNSChild() bool { return os.Getenv(netnsChildEnv) != "" }

// RequireInNetNS fails a test that is about to use the test network from outside a
// namespace InNetNS made: the host has no route to 198.18.0.0/24, so a dial would
// leave by its default route.
func RequireInNetNS(t testing.TB) {
	t.Helper()
	if os.Getenv(netnsChildEnv) == "" {
		t.Fatalf("refusing to use %s outside the test's network namespace", NetSubnet)
	}
}

// Dnsmasq is a DHCP server on the test bridge.
type Dnsmasq struct {
	Leases string // its lease file
}

// StartDnsmasq serves DHCP on the bridge, handing out 198.18.0.100-150 with the bridge
// as router, and no DNS. It is stopped at cleanup.
func StartDnsmasq(t *testing.T, ns *NetNS) *Dnsmasq {
	t.Helper()
	RequireInNetNS(t)
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		Unavailable(t, "dnsmasq not found (install dnsmasq-base): %v", err)
	}
	dir := t.TempDir()
	d := &Dnsmasq{Leases: filepath.Join(dir, "leases")}
	cmd := exec.Command(bin, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface="+ns.Bridge, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=198.18.0.100,198.18.0.150,255.255.255.0,1h", "--dhcp-option=option:router,"+NetGateway.String(),
		"--dhcp-leasefile="+d.Leases, "--pid-file="+filepath.Join(dir, "pid"), "--user=root", "--log-dhcp", "--log-facility=-")
	cmd.Stdout, cmd.Stderr = tLogWriter{t, "dnsmasq: "}, tLogWriter{t, "dnsmasq: "}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return d
}

// tLogWriter sends a process's output to t.Log, line by line, with a prefix.
type tLogWriter struct {
	t      testing.TB
	prefix string
}

func (w tLogWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(p), nil
}

// NetLibvirtd starts a libvirtd of the test's own inside the namespace, with private
// runtime, state, cache, log and configuration directories (tmpfs mounts in the
// child's own mount namespace): it sees neither the host's domains nor its networks,
// and the host's libvirtd never sees the test's bridge. It returns its URI,
// qemu:///system as the child sees it.
func NetLibvirtd(t *testing.T) string {
	t.Helper()
	RequireInNetNS(t)
	for _, bin := range []string{"libvirtd", "virtlogd", "virsh"} {
		if _, err := exec.LookPath(bin); err != nil {
			Unavailable(t, "%s not found (install libvirt-daemon-system): %v", bin, err)
		}
	}
	for _, dir := range []string{"/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt",
		"/etc/libvirt/qemu", "/etc/libvirt/storage", "/etc/libvirt/secrets"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("libvirtd: %v", err)
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
			t.Fatalf("libvirtd: private %s: %v", dir, err)
		}
	}
	if err := os.MkdirAll("/etc/libvirt/qemu/networks/autostart", 0o755); err != nil {
		t.Fatalf("libvirtd: %v", err)
	}
	var pids []string
	for _, bin := range []string{"virtlogd", "libvirtd"} {
		pidFile := "/run/libvirt/drover-test-" + bin + ".pid"
		if out, err := exec.Command(bin, "-d", "-p", pidFile).CombinedOutput(); err != nil {
			t.Fatalf("start %s: %v: %s", bin, err, out)
		}
		pids = append(pids, pidFile)
	}
	t.Cleanup(func() {
		for _, f := range pids {
			if b, err := os.ReadFile(f); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGTERM)
				}
			}
		}
	})
	deadline := time.Now().Add(libvirtdStartTimeout)
	for {
		out, err := exec.Command("virsh", "-c", LibvirtURI, "uri").CombinedOutput()
		if err == nil {
			return LibvirtURI
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test's libvirtd did not answer within %s: %v: %s", libvirtdStartTimeout, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// DefineLibvirtNetwork defines and starts an isolated libvirt network (no <forward>:
// no NAT, no route out) called name, on bridge drvirbr0 at NetGateway/24, with
// libvirt's DHCP handing out 198.18.0.100-150. Only in the test's own libvirtd.
func DefineLibvirtNetwork(t *testing.T, uri, name string) {
	t.Helper()
	RequireInNetNS(t)
	xml := fmt.Sprintf(`<network><name>%s</name><bridge name='drvirbr0' stp='off'/>
<ip address='%s' netmask='255.255.255.0'><dhcp><range start='198.18.0.100' end='198.18.0.150'/></dhcp></ip></network>`, name, NetGateway)
	f := filepath.Join(t.TempDir(), "net.xml")
	if err := os.WriteFile(f, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	virsh := func(args ...string) error {
		if out, err := exec.Command("virsh", append([]string{"-c", uri}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := virsh("net-define", f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its dnsmasq goes with it.
		_ = virsh("net-destroy", name)
		_ = virsh("net-undefine", name)
	})
	if err := virsh("net-start", name); err != nil {
		t.Fatal(err)
	}
	if err := checkIsolated(); err != nil {
		t.Fatalf("after defining libvirt network %s: %v", name, err)
	}
}

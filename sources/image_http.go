package sources

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// An image URL comes from a commit, so fetching it must not be a way to reach the
// host's own services (Consul's API and Drover's status on 127.0.0.1) or the cloud's
// metadata service (credentials on 169.254.169.254). The address is checked where the
// connection is made, after name resolution, so a name that resolves (or re-resolves)
// to a refused address is refused too; redirects go through the same dialer.

// maxImageRedirects bounds the redirects one image download follows.
const maxImageRedirects = 5

// hostPolicy says which addresses image downloads may connect to.
type hostPolicy struct {
	names    map[string]bool // host names allowed whatever they resolve to
	prefixes []netip.Prefix  // addresses allowed though otherwise refused
	// connecting, when set, is called for each connection the policy let through,
	// before it is made; its error stops it. Tests use it to see every attempt.
	connecting func(network, address string) error
}

func newHostPolicy(allow []string) (*hostPolicy, error) {
	p := &hostPolicy{names: map[string]bool{}}
	for _, a := range allow {
		a = strings.TrimSpace(a)
		if pfx, err := netip.ParsePrefix(a); err == nil {
			p.prefixes = append(p.prefixes, pfx.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
			p.prefixes = append(p.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		if a == "" || strings.ContainsAny(a, "/:[] ") {
			return nil, fmt.Errorf("image allow host %q: want a host name, an IP address or a CIDR", a)
		}
		p.names[normHost(a)] = true
	}
	return p, nil
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// metadataAddrs are cloud metadata services outside link-local space.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS, IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
)

// refusedAddr says why ip may not be connected to by default, or "".
func refusedAddr(ip netip.Addr) string {
	ip = ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata lives there)"
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return "an unspecified address"
	case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "a multicast or broadcast address"
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return "a cloud metadata address"
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if own, ok := netip.AddrFromSlice(n.IP); ok && own.Unmap() == ip {
					return "an address of this host"
				}
			}
		}
	}
	return ""
}

func (p *hostPolicy) ipAllowed(ip netip.Addr) bool {
	for _, pfx := range p.prefixes {
		if pfx.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

// checkHost refuses a URL host that is a refused IP literal, before any connection.
// Host names are checked once resolved, by the dialer.
func (p *hostPolicy) checkHost(host string) string {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil || p.ipAllowed(ip) {
		return ""
	}
	if why := refusedAddr(ip); why != "" {
		return fmt.Sprintf("%s is %s; pass --image-allow-host %s to allow it", host, why, ip.Unmap())
	}
	return ""
}

// addrError is the dialer's refusal; download turns it into a PolicyError.
type addrError struct{ msg string }

func (e *addrError) Error() string { return e.msg }

func (p *hostPolicy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	nameAllowed := p.names[normHost(host)]
	d := net.Dialer{
		Timeout: 30 * time.Second,
		// Control runs once the address is resolved, just before connect(2).
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &addrError{fmt.Sprintf("unexpected address %q", address)}
			}
			if !nameAllowed && !p.ipAllowed(ap.Addr()) {
				if why := refusedAddr(ap.Addr()); why != "" {
					return &addrError{fmt.Sprintf("%s resolves to %s, %s; pass --image-allow-host to allow it", host, ap.Addr(), why)}
				}
			}
			if p.connecting != nil {
				return p.connecting(network, address)
			}
			return nil
		},
	}
	return d.DialContext(ctx, network, addr)
}

// redirectError is a redirect the policy refuses.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

func (p *hostPolicy) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxImageRedirects {
		return &redirectError{fmt.Sprintf("more than %d redirects", maxImageRedirects)}
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return &redirectError{fmt.Sprintf("redirect to a %s: URL", req.URL.Scheme)}
	}
	if p.names[normHost(req.URL.Hostname())] {
		return nil
	}
	if why := p.checkHost(req.URL.Hostname()); why != "" {
		return &redirectError{"redirect to " + why}
	}
	return nil
}

// newImageClient is the HTTP client of image downloads. It has no proxy: the address
// policy must see the server's address, not a proxy's.
func newImageClient(p *hostPolicy) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:            p.dial,
			ForceAttemptHTTP2:      true,
			TLSHandshakeTimeout:    30 * time.Second,
			ResponseHeaderTimeout:  2 * time.Minute,
			IdleConnTimeout:        90 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: p.checkRedirect,
	}
}

// openHTTP sends the request and returns the body once the response says it is an
// image within the size limit. total is its Content-Length, -1 when unknown.
func (c *ImageCache) openHTTP(ctx context.Context, rawURL string) (io.ReadCloser, int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, refused(rawURL, "invalid URL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, refused(rawURL, "invalid request: %v", err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if resp.ContentLength > c.maxSize {
		resp.Body.Close()
		return nil, 0, refused(rawURL, "Content-Length %d is more than the image size limit %d (--image-max-size)", resp.ContentLength, c.maxSize)
	}
	return resp.Body, resp.ContentLength, nil
}

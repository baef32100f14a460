package discovery

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// defaultCheckTimeout is Consul's timeout for a check that sets none.
const defaultCheckTimeout = 10 * time.Second

// Probe runs the registration's check once, from this host, with Consul's semantics:
// an HTTP check passes on a 2xx answer, a TCP check when the port accepts a
// connection. It lets a caller notice a new instance become healthy within
// milliseconds, where Consul only looks once per interval (at least a second).
func (c *Client) Probe(ctx context.Context, r Registration) error {
	timeout := r.Check.Timeout
	if timeout <= 0 {
		timeout = defaultCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hostPort := net.JoinHostPort(r.Address, strconv.Itoa(r.Port))
	if r.Check.TCP {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort)
		if err != nil {
			return fmt.Errorf("probe %s: %w", r.ID, err)
		}
		return conn.Close()
	}
	url := "http://" + hostPort + r.Check.HTTPPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", r.ID, err)
	}
	req.Header.Set("User-Agent", "drover health probe")
	resp, err := c.probeClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", r.ID, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probe %s: GET %s: %s", r.ID, url, resp.Status)
	}
	return nil
}

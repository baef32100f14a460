// Package discovery is Drover's view of Consul: it registers instances with their
// health check and meta, waits until they pass, drains them through maintenance mode,
// deregisters them and lists what the local agent holds.
//
// Every call goes to the local Consul agent; the agent's catalog sync makes the
// registrations visible cluster-wide. When Consul cannot be reached, errors wrap
// ErrUnavailable so callers can keep the fleet as it is and retry later.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/hashicorp/consul/api"
)

// ErrUnavailable is wrapped by every error caused by Consul not answering: the agent is
// down or unreachable, or the cluster has no leader.
var ErrUnavailable = errors.New("consul unavailable")

// ErrNotFound is wrapped when an instance ID is unknown to the local agent.
var ErrNotFound = errors.New("instance not registered")

// Config says how to reach the Consul agent. The ACL token comes only from
// CONSUL_HTTP_TOKEN (read by consul/api), never from files in git.
type Config struct {
	// Address is the agent's HTTP API as host:port; empty means consul/api's default,
	// CONSUL_HTTP_ADDR or 127.0.0.1:8500.
	Address string
}

// Client talks to one Consul agent.
type Client struct {
	api  *api.Client
	addr string
	log  *slog.Logger
	// probeClient runs Probe's HTTP checks: no keep-alive, like Consul's checks, so a
	// probe always opens a fresh connection to the instance.
	probeClient *http.Client
}

// New returns a Client for cfg. It does not contact Consul; Ping does.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	acfg := api.DefaultConfig()
	if cfg.Address != "" {
		if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
			return nil, fmt.Errorf("consul address %q: want host:port: %w", cfg.Address, err)
		}
		acfg.Address = cfg.Address
	}
	c, err := api.NewClient(acfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", acfg.Address, err)
	}
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return &Client{api: c, addr: acfg.Address, log: log, probeClient: probe}, nil
}

// Address is the agent address the client talks to.
func (c *Client) Address() string { return c.addr }

// Ping checks that the agent answers and that its cluster has a leader, without which
// no registration reaches the catalog.
func (c *Client) Ping(ctx context.Context) error {
	leader, err := c.api.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("ping consul: %w", c.classify(ctx, err))
	}
	if leader == "" {
		return fmt.Errorf("ping consul: %w at %s: cluster has no leader", ErrUnavailable, c.addr)
	}
	return nil
}

// classify marks errors that mean "Consul is not answering" with ErrUnavailable and
// unknown instances with ErrNotFound; the caller's own cancellation stays as it is.
func (c *Client) classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(err, ctxErr) {
			return err
		}
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	var statusErr api.StatusError
	if errors.As(err, &statusErr) {
		switch {
		case statusErr.Code == http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case statusErr.Code >= 500:
			// Consul failing server-side (no leader, RPC to a restarting server, …):
			// an outage, never an answer about an instance.
			return fmt.Errorf("%w at %s: %w", ErrUnavailable, c.addr, err)
		}
		return err
	}
	// Anything below HTTP (refused, reset, timeout, no such host) is a *url.Error, a
	// net.Error: the agent did not answer.
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("%w at %s: %w", ErrUnavailable, c.addr, err)
	}
	return err
}

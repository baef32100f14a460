// Package discovery is Drover's view of Consul: it registers instances with their
// health check and meta, waits until they pass, drains them through maintenance mode,
// deregisters them and lists what the local agent and the catalog hold. It also
// elects one leader per fleet (Lead) and fences its steps (Leadership.Guard), so a
// Drover that lost the lock stops acting before another can take it.
//
// Every call goes to the local Consul agent; the agent's catalog sync makes the
// registrations visible cluster-wide. Every call is bounded by Config.CallTimeout, so
// an agent that accepts connections and never answers cannot hang Drover. When
// Consul cannot be reached or does not answer in time, errors wrap ErrUnavailable so
// callers can keep the fleet as it is and retry later.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

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
	// CallTimeout bounds every call to the agent, blocking queries included: their
	// wait is at most half of it (Consul adds up to 1/16 of jitter), so an answer
	// that is merely waited for never hits it. Default 10 s; at least 100 ms. It
	// protects against an agent (or a proxy in front of it) that accepts the
	// connection and never answers: without it such a call blocks the pass, and the
	// leader's hold on the lock, forever.
	CallTimeout time.Duration
}

// DefaultCallTimeout is Config.CallTimeout's default: far above a healthy local
// agent's answer time, far below the time an operator would wait.
const DefaultCallTimeout = 10 * time.Second

const minCallTimeout = 100 * time.Millisecond

// Client talks to one Consul agent.
type Client struct {
	api  *api.Client
	addr string
	log  *slog.Logger
	// timeout bounds each call (Config.CallTimeout); maxWait bounds each blocking
	// query's wait, well inside timeout.
	timeout, maxWait time.Duration
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
	timeout := cfg.CallTimeout
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	if timeout < minCallTimeout {
		return nil, fmt.Errorf("consul call timeout %s: want at least %s", timeout, minCallTimeout)
	}
	maxWait := timeout / 2
	// Calls made inside consul/api (the lock's own blocking reads and its monitor)
	// take no context: the default wait and the HTTP client's timeout bound them.
	acfg.WaitTime = maxWait
	hc, err := api.NewHttpClient(acfg.Transport, acfg.TLSConfig)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", acfg.Address, err)
	}
	hc.Timeout = timeout
	acfg.HttpClient = hc
	c, err := api.NewClient(acfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", acfg.Address, err)
	}
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return &Client{api: c, addr: acfg.Address, log: log, timeout: timeout, maxWait: maxWait, probeClient: probe}, nil
}

// call bounds one call to the agent by the client's CallTimeout. Errors are
// classified against the caller's ctx, so a call that ran out of its own time is
// ErrUnavailable and the caller's cancellation stays what it is.
func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// Ping checks that the agent answers and that its cluster has a leader, without which
// no registration reaches the catalog.
func (c *Client) Ping(ctx context.Context) error {
	cctx, cancel := c.call(ctx)
	defer cancel()
	leader, err := c.api.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(cctx))
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
	// The call's own timeout (CallTimeout) ran out: the agent did not answer.
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w at %s: no answer within %s: %w", ErrUnavailable, c.addr, c.timeout, err)
	}
	// Anything below HTTP (refused, reset, timeout, no such host) is a *url.Error, a
	// net.Error: the agent did not answer.
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("%w at %s: %w", ErrUnavailable, c.addr, err)
	}
	return err
}

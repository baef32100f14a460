// Package client is the Go client of a running Drover's HTTP API (/api/v1 on its
// --listen address): fleet status, event history and the live event stream, and the
// operator's orders (suspend, resume, retry, reconcile). When no Drover answers at
// all, Consul is the fallback for what is kept there (see Consul).
//
// It lives beside server/ rather than under internal/ because it is the API's
// contract seen from the other side: cmd/drover is its caller today, and a tool
// outside Drover may drive a fleet with it tomorrow.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/reconciler"
)

// DefaultServer is where `drover run` listens by default.
const DefaultServer = "http://127.0.0.1:7070"

// DefaultTimeout bounds each request (not the event stream, which lasts).
const DefaultTimeout = 10 * time.Second

// Bounds on what a server may send back.
const (
	maxBody      = 16 << 20 // a status of 1,000 VMs is about 300 KiB
	maxErrorBody = 64 << 10
)

// Config says how to reach a Drover.
type Config struct {
	// Server is the API's base URL, http(s)://host:port; a bare host:port means http.
	Server string
	// Token is sent as a Bearer token when set (the daemon's --listen-token-file).
	Token string
	// Timeout bounds each request; default DefaultTimeout.
	Timeout time.Duration
	// Transport, optional, replaces the default one (tests).
	Transport http.RoundTripper
}

// Client talks to one Drover. Safe for concurrent use.
type Client struct {
	base    *url.URL
	shown   string // base for messages, credentials masked
	token   string
	timeout time.Duration
	hc      *http.Client
}

// New returns a Client for cfg. It does not contact the server.
func New(cfg Config) (*Client, error) {
	raw := cfg.Server
	if raw == "" {
		raw = DefaultServer
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", redact.String(raw), redact.Error(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server %s: want http://host:port or https://host:port", redact.URL(raw))
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
		}
	}
	// Redirects are not followed: the token would go wherever one points.
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Client{base: u, shown: redact.URL(u.String()), token: cfg.Token, timeout: timeout, hc: hc}, nil
}

// Server is the server's address as shown in messages (credentials masked).
func (c *Client) Server() string { return c.shown }

// serviceName is the fleet file's rule for names (sources): it also keeps a name
// from reaching another path of the API.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Status is the fleet at a glance.
func (c *Client) Status(ctx context.Context) (reconciler.FleetStatus, error) {
	var st reconciler.FleetStatus
	err := c.do(ctx, http.MethodGet, "/api/v1/status", nil, nil, &st)
	return st, err
}

// History is the stored events, oldest first: the last limit (all the server keeps
// when limit <= 0) of service's, or of every service's when service is "".
func (c *Client) History(ctx context.Context, service string, limit int) ([]reconciler.Event, error) {
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var evs []reconciler.Event
	err := c.do(ctx, http.MethodGet, "/api/v1/history", q, nil, &evs)
	return evs, err
}

// Suspend leaves service exactly as it is until Resume.
func (c *Client) Suspend(ctx context.Context, service, reason string) error {
	return c.order(ctx, service, "suspend", map[string]string{"reason": reason})
}

// Resume lifts a suspension.
func (c *Client) Resume(ctx context.Context, service string) error {
	return c.order(ctx, service, "resume", nil)
}

// Retry releases service's held revision.
func (c *Client) Retry(ctx context.Context, service string) error {
	return c.order(ctx, service, "retry", nil)
}

// Reconcile asks for a pass now.
func (c *Client) Reconcile(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/reconcile", nil, struct{}{}, nil)
}

func (c *Client) order(ctx context.Context, service, verb string, body any) error {
	if !serviceName.MatchString(service) {
		return fmt.Errorf("%s %q: not a service name (lower-case letters, digits and '-', starting with a letter)", verb, printable(service, 64))
	}
	if body == nil {
		body = struct{}{}
	}
	return c.do(ctx, http.MethodPost, "/api/v1/services/"+service+"/"+verb, nil, body, nil)
}

// do sends one request and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, op, err := c.send(ctx, method, path, q, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return apiError(op, resp)
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxBody))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: read the answer: %w", op, err)
	}
	return nil
}

// send builds and sends a request; op names it for messages. A request that got no
// HTTP answer at all wraps ErrUnreachable.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any, accept string) (*http.Response, string, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	shown := u
	shown.User = nil
	op := method + " " + shown.String()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, op, fmt.Errorf("%s: %w", op, err)
		}
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, op, fmt.Errorf("%s: %w", op, redact.Error(err, c.token))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, op, c.transportError(ctx, op, err)
	}
	return resp, op, nil
}

// transportError classifies an error that came without an HTTP answer. Only the
// caller's own cancellation is not "unreachable": a refused connection, a timeout, a
// reset or a name that does not resolve all mean no Drover answered.
func (c *Client) transportError(ctx context.Context, op string, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // its message repeats the URL
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, cerr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("no answer within %s", c.timeout)
	}
	return &UnreachableError{Server: c.shown, Op: op, Err: redact.Error(err, c.token)}
}

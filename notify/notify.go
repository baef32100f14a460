// Package notify sends the fleet's events to HTTP receivers (a chat's incoming webhook,
// an alert router, a script): each event POSTed as JSON, in Slack- or Matrix-compatible
// text when asked, signed with HMAC-SHA256 when a secret is set.
//
// Delivery never holds up Drover: events are read from the reconciler's View as they
// happen and queued per receiver (a bounded queue; when full, the event is dropped
// and counted), and each receiver has its own sender that retries with jittered
// backoff, a few attempts, each bounded in time. A receiver that hangs or is gone
// costs only its own queue.
//
// A receiver URL often carries its credential (a Slack webhook's path, a token in
// the query): no log line or error shows more of it than its scheme and host.
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/reconciler"
)

// Subscriber is where events come from: reconciler.View has it.
type Subscriber interface {
	Subscribe() (events <-chan reconciler.Event, cancel func())
}

var _ Subscriber = reconciler.View(nil)

// Config says where to send and how.
type Config struct {
	// URLs are the receivers: http:// or https:// only.
	URLs []string
	// Format is the body: FormatJSON (default), FormatSlack or FormatMatrix.
	Format Format
	// Secret, when set, signs each body (see Sign).
	Secret []byte
	// QueueSize bounds the events waiting per receiver; default 256.
	QueueSize int
	// Attempts is how many times one event is sent before it is given up; default 5.
	Attempts int
	// Timeout bounds each attempt; default 10 s.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts; 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Drain is how long, once Run's ctx ends, queued events still have to go out;
	// default 5 s.
	Drain time.Duration
	// Now stamps signatures; time.Now by default.
	Now func() time.Time
	// Transport, optional, replaces the default one.
	Transport http.RoundTripper
}

func (c *Config) defaults() {
	if c.Format == "" {
		c.Format = FormatJSON
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 256
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Notifier delivers events to every receiver.
type Notifier struct {
	cfg       Config
	log       *slog.Logger
	receivers []*receiver
}

// New checks cfg (every URL http(s) with a host, a known format) and returns a
// Notifier; nothing is sent until Run.
func New(cfg Config, log *slog.Logger) (*Notifier, error) {
	cfg.defaults()
	if _, err := ParseFormat(string(cfg.Format)); err != nil {
		return nil, err
	}
	if len(cfg.URLs) == 0 {
		return nil, errors.New("notify: no receiver URL")
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   2,
		}
	}
	// A redirect is not followed: a signed event goes only where it was told to.
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var secrets []string
	n := &Notifier{cfg: cfg}
	for i, raw := range cfg.URLs {
		u, name, err := parseReceiver(i, raw)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, urlSecrets(raw, u)...)
		n.receivers = append(n.receivers, &receiver{n: n, url: u.String(), name: name, hc: hc, queue: make(chan reconciler.Event, cfg.QueueSize)})
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The receivers mask what they print themselves; this is the line that holds
	// whatever slips through (an error quoting the URL).
	n.log = slog.New(redact.Handler(log.Handler(), secrets))
	for _, r := range n.receivers {
		r.log = n.log.With("receiver", r.name)
	}
	return n, nil
}

// parseReceiver checks one URL; name is how it is shown: #N scheme://host/xxxxx.
func parseReceiver(i int, raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("notify url #%d: not a URL", i+1)
	}
	name := fmt.Sprintf("#%d %s", i+1, displayURL(u))
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", fmt.Errorf("notify url %s: want an http:// or https:// URL", name)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("notify url %s: no host", name)
	}
	return u, name, nil
}

// displayURL is scheme://host[:port], with the path and query (where webhook
// credentials live) and any user info replaced by the mask.
func displayURL(u *url.URL) string {
	s := u.Scheme + "://"
	if u.User != nil {
		s += redact.Mask + "@"
	}
	s += u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		s += "/" + redact.Mask
	}
	return s
}

// urlSecrets are the parts of a receiver URL that must never be printed.
func urlSecrets(raw string, u *url.URL) []string {
	out := []string{raw, u.String()}
	if u.User != nil {
		out = append(out, u.User.String())
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	if len(u.Path) > 1 {
		out = append(out, u.Path, u.EscapedPath())
	}
	if u.RawQuery != "" {
		out = append(out, u.RawQuery)
	}
	return out
}

// Run subscribes to src and delivers every event until ctx ends; then what is queued
// gets Config.Drain to go out, and Run returns.
func (n *Notifier) Run(ctx context.Context, src Subscriber) error {
	events, cancel := src.Subscribe()
	defer cancel()
	deliverCtx, stopDelivery := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDelivery()
	stopping := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range n.receivers {
		wg.Go(func() { r.run(deliverCtx, stopping) })
	}
	n.log.Info("notifications on", "receivers", len(n.receivers), "format", string(n.cfg.Format), "signed", len(n.cfg.Secret) > 0)
	for stop := false; !stop; {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil // the view closed; wait for ctx
				continue
			}
			n.Publish(ev)
		case <-ctx.Done():
			stop = true
		}
	}
	// Events already handed over (the last of a shutdown) still go out.
	for more := events != nil; more; {
		select {
		case ev, ok := <-events:
			if more = ok; ok {
				n.Publish(ev)
			}
		default:
			more = false
		}
	}
	close(stopping)
	t := time.AfterFunc(n.cfg.Drain, stopDelivery)
	defer t.Stop()
	wg.Wait()
	return nil
}

// Publish queues ev for every receiver and returns at once: a receiver whose queue
// is full loses ev (counted in Stats, logged once per run of losses).
func (n *Notifier) Publish(ev reconciler.Event) {
	for _, r := range n.receivers {
		r.enqueue(ev)
	}
}

// Stats counts one receiver's deliveries.
type Stats struct {
	// Receiver is the URL as shown: "#1 https://hooks.example/xxxxx".
	Receiver string
	// Delivered and Failed count events; Retries counts attempts after a first;
	// Dropped counts events lost to a full queue.
	Delivered, Failed, Retries, Dropped uint64
}

// Stats reports each receiver's counts, in --notify-url order.
func (n *Notifier) Stats() []Stats {
	out := make([]Stats, len(n.receivers))
	for i, r := range n.receivers {
		out[i] = Stats{Receiver: r.name, Delivered: r.delivered.Load(), Failed: r.failed.Load(), Retries: r.retries.Load(), Dropped: r.dropped.Load()}
	}
	return out
}

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"

	"github.com/drover-dev/drover/internal/backoff"
	"github.com/drover-dev/drover/reconciler"
)

// receiver is one URL: its queue and the one sender that empties it.
type receiver struct {
	n     *Notifier
	url   string
	name  string // as shown (displayURL)
	hc    *http.Client
	log   *slog.Logger
	queue chan reconciler.Event

	delivered, failed, retries, dropped atomic.Uint64
	// losing is set while events are being dropped, so a full queue logs once per run
	// of losses rather than once per event.
	losing atomic.Bool
}

func (r *receiver) enqueue(ev reconciler.Event) {
	select {
	case r.queue <- ev:
		if r.losing.CompareAndSwap(true, false) {
			r.log.Info("notification queue has room again", "dropped_total", r.dropped.Load())
		}
	default:
		r.dropped.Add(1)
		if !r.losing.Swap(true) {
			r.log.Warn("notification queue full: dropping events until the receiver catches up", "queue", cap(r.queue), "kind", string(ev.Kind), "seq", ev.Seq)
		}
	}
}

// run sends queued events one at a time, in order, until stopping closes; then it
// sends what is left while ctx lasts.
func (r *receiver) run(ctx context.Context, stopping <-chan struct{}) {
	for {
		select {
		case ev := <-r.queue:
			r.deliver(ctx, ev)
		case <-stopping:
			for {
				select {
				case ev := <-r.queue:
					r.deliver(ctx, ev)
				default:
					return
				}
			}
		}
	}
}

// deliver sends one event, retrying what may pass later (no answer, 5xx, 408, 429)
// with backoff, up to Attempts.
func (r *receiver) deliver(ctx context.Context, ev reconciler.Event) {
	body, err := r.n.cfg.Format.body(ev)
	if err != nil {
		r.failed.Add(1)
		r.log.Error("cannot format the event", "kind", string(ev.Kind), "seq", ev.Seq, "err", err)
		return
	}
	bo := backoff.Backoff{Min: r.n.cfg.MinBackoff, Max: r.n.cfg.MaxBackoff}
	for attempt := 1; ; attempt++ {
		err := r.post(ctx, ev, body)
		if err == nil {
			r.delivered.Add(1)
			return
		}
		var perm *permanentError
		if errors.As(err, &perm) || attempt >= r.n.cfg.Attempts || ctx.Err() != nil {
			r.failed.Add(1)
			r.log.Warn("notification not delivered", "kind", string(ev.Kind), "seq", ev.Seq, "attempts", attempt, "err", err)
			return
		}
		wait := bo.Next()
		r.log.Debug("notification failed; retrying", "kind", string(ev.Kind), "seq", ev.Seq, "attempt", attempt, "in", wait, "err", err)
		if !backoff.Sleep(ctx, wait) {
			r.failed.Add(1)
			r.log.Warn("notification not delivered: stopping", "kind", string(ev.Kind), "seq", ev.Seq, "attempts", attempt, "err", err)
			return
		}
		r.retries.Add(1)
	}
}

// permanentError is an answer that another attempt would get again (4xx, a redirect).
type permanentError struct{ status int }

func (e *permanentError) Error() string {
	if e.status/100 == 3 {
		return fmt.Sprintf("answered %d: redirects are not followed", e.status)
	}
	return fmt.Sprintf("answered %d %s", e.status, http.StatusText(e.status))
}

// Headers on every notification.
const (
	HeaderSignature = "X-Drover-Signature" // sha256=<hex HMAC of "<timestamp>.<body>">
	HeaderTimestamp = "X-Drover-Timestamp" // Unix seconds when this attempt was signed
	HeaderEvent     = "X-Drover-Event"     // the event's kind
	HeaderDelivery  = "X-Drover-Delivery"  // <fleet>-<seq>: the same on every attempt
)

func (r *receiver) post(ctx context.Context, ev reconciler.Event, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, r.n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return &permanentError{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "drover-notify")
	req.Header.Set(HeaderEvent, string(ev.Kind))
	req.Header.Set(HeaderDelivery, ev.Fleet+"-"+strconv.FormatUint(ev.Seq, 10))
	if len(r.n.cfg.Secret) > 0 {
		ts := strconv.FormatInt(r.n.cfg.Now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, Sign(r.n.cfg.Secret, ts, body))
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message is the whole URL, credential included
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch s := resp.StatusCode; {
	case s/100 == 2:
		return nil
	case s >= 500, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests:
		return fmt.Errorf("answered %d %s", s, http.StatusText(s))
	default:
		return &permanentError{status: s}
	}
}

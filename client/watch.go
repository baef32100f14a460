package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/drover-dev/drover/internal/backoff"
	"github.com/drover-dev/drover/reconciler"
)

// WatchOptions tune Watch.
type WatchOptions struct {
	// After: events with a Seq at or below it were seen already and are skipped.
	After uint64
	// OnRetry, optional, hears of each lost or refused connection before the wait.
	OnRetry func(err error, wait time.Duration)
	// MinBackoff and MaxBackoff bound the wait between reconnections; 250 ms and 10 s
	// by default.
	MinBackoff, MaxBackoff time.Duration
}

// maxEventLine bounds one line of the stream: an event is a few hundred bytes.
const maxEventLine = 1 << 20

// Watch follows the server's live events of service ("" for all) and calls fn for
// each, in order, once. It reconnects with backoff when the stream breaks or no Drover
// answers, asking the server to replay what came after the last event seen
// (?since=<seq>), so an event that happened while it was away is shown too (as long
// as the fleet's ring still has it).
// It returns nil when ctx ends, and an error only for what waiting will not mend: a
// refused token or an unknown service.
func (c *Client) Watch(ctx context.Context, service string, opts WatchOptions, fn func(reconciler.Event)) error {
	bo := backoff.Backoff{Min: opts.MinBackoff, Max: opts.MaxBackoff}
	if bo.Min <= 0 {
		bo.Min = 250 * time.Millisecond
	}
	if bo.Max <= 0 {
		bo.Max = 10 * time.Second
	}
	last := opts.After
	emit := func(ev reconciler.Event) {
		if ev.Seq != 0 && ev.Seq <= last {
			return
		}
		if ev.Seq != 0 {
			last = ev.Seq
		}
		fn(ev)
	}
	for {
		connected, err := c.stream(ctx, service, last, emit)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) {
			return err
		}
		if connected {
			bo.Reset()
		}
		wait := bo.Next()
		if opts.OnRetry != nil {
			opts.OnRetry(err, wait)
		}
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// stream runs one connection: subscribe (with the replay after last), then relay the
// stream until it ends. It reports whether the subscription was accepted.
func (c *Client) stream(ctx context.Context, service string, last uint64, emit func(reconciler.Event)) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := url.Values{}
	if service != "" {
		q.Set("service", service)
	}
	// The server replays the stored events after last (all of them for 0: none was
	// seen) before the live ones, subscribed first so nothing falls between the
	// history already shown and the stream; emit drops any seen twice.
	q.Set("since", strconv.FormatUint(last, 10))
	// No overall timeout (the stream lasts): the transport bounds the dial and the
	// wait for the answer's headers.
	resp, op, err := c.send(ctx, http.MethodGet, "/api/v1/events", q, nil, "text/event-stream")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, apiError(op, resp)
	}
	err = readEvents(resp, emit)
	if err == nil {
		err = fmt.Errorf("%s: the server closed the stream", op)
	} else {
		err = fmt.Errorf("%s: %w", op, err)
	}
	return true, err
}

// readEvents parses a text/event-stream body: "event:" and "data:" lines, a blank
// line ending each event, ":" comments (keep-alives) ignored. Only data that decodes
// as an Event is passed on.
func readEvents(resp *http.Response, emit func(reconciler.Event)) error {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() > 0 {
				var ev reconciler.Event
				if err := json.Unmarshal([]byte(data.String()), &ev); err == nil && ev.Kind != "" {
					emit(ev)
				}
				data.Reset()
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data:"):
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}

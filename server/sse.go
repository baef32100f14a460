package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/drover-dev/drover/reconciler"
)

// streamWriteTimeout bounds each write to an event stream: a client that stops
// reading is dropped, and its slot freed, instead of holding a goroutine forever.
const streamWriteTimeout = 10 * time.Second

// apiEvents streams events as server-sent events: "id: <seq>", "event: <kind>",
// "data: <Event JSON>", with a comment line every Heartbeat. ?service= keeps one
// service's. ?since=<seq> (or the Last-Event-ID a reconnecting EventSource sends)
// first replays the stored events after that seq, so a follower misses nothing
// between reading history and the live stream.
func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service := q.Get("service")
	since, replay := uint64(0), false
	for _, v := range []string{q.Get("since"), r.Header.Get("Last-Event-ID")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("since %q: want an event's seq", truncate(v, 32)))
			return
		}
		since, replay = n, true
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, r, http.StatusServiceUnavailable, fmt.Sprintf("too many event streams open (at most %d); try again later", cap(s.streams)))
		return
	}
	// Subscribe before reading history, so nothing falls between the two.
	events, cancel := s.cfg.View.Subscribe()
	defer cancel()
	var backlog []reconciler.Event
	if replay {
		h, err := s.cfg.View.History(r.Context(), service, 0)
		if err != nil {
			s.viewError(w, r, "read history", err)
			return
		}
		for _, e := range h {
			if e.Seq > since {
				backlog = append(backlog, e)
			}
		}
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	send := func() bool {
		rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	buf.WriteString("retry: 2000\n: connected\n\n")
	if !send() {
		return
	}
	last := since
	for _, e := range backlog {
		writeEvent(&buf, e)
		last = max(last, e.Seq)
	}
	if len(backlog) > 0 && !send() {
		return
	}
	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			buf.WriteString(": heartbeat\n\n")
		case e, ok := <-events:
			if !ok {
				return
			}
			if service != "" && e.Service != service || replay && e.Seq <= last {
				continue
			}
			writeEvent(&buf, e)
		}
		if !send() {
			return
		}
	}
}

func writeEvent(buf *bytes.Buffer, e reconciler.Event) {
	data, err := json.Marshal(e) // one line: JSON escapes every newline
	if err != nil {
		return
	}
	fmt.Fprintf(buf, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, sseName(string(e.Kind)), data)
}

// sseName keeps an event name to one safe token: a kind with anything but
// [a-z0-9_] would break the framing, so it goes out as a plain message.
func sseName(kind string) string {
	if kind == "" {
		return "message"
	}
	for _, c := range kind {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return "message"
		}
	}
	return kind
}

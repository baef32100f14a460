package libvirt

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

// libvirt-go's calls take no context and block in C until libvirtd answers, so a
// wedged libvirtd (stopped, deadlocked, its socket backlog full) would hang a pass
// forever. Two bounds:
//
//   - Every exported Driver method returns when its ctx ends; the libvirt call it was in
//     finishes in the background (see bounded).
//   - Each connection sends keepalive pings: when libvirtd stops answering them, libvirt
//     closes the connection, the call in it fails (libvirt 9.0 may leave a second call
//     queued behind it waiting: only its ctx ends that one), and the next call
//     reconnects.
const (
	keepAliveInterval = 5 // seconds of silence before a ping
	keepAliveCount    = 3 // unanswered pings before the connection is closed
	// closeWait is how long Close waits for calls still in libvirt.
	closeWait = 5 * time.Second
	// connectTimeout bounds opening a connection when the caller's ctx has no
	// deadline of its own (start-up): keepalive is not active yet while it opens.
	connectTimeout = 30 * time.Second
)

// bounded runs f and returns its result, or ctx's error as soon as ctx ends. A libvirt
// call cannot be interrupted, so f then runs on in the background; abandon, if given,
// receives what f returns after nobody waits for it (a connection to close). inflight,
// if given, counts f while it runs: a connection must not be closed under a call.
func bounded[T any](ctx context.Context, inflight *sync.WaitGroup, f func() (T, error), abandon func(T)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if inflight != nil {
		inflight.Add(1)
		f0 := f
		f = func() (T, error) {
			defer inflight.Done()
			return f0()
		}
	}
	type result struct {
		v   T
		err error
	}
	var (
		mu       sync.Mutex
		gone     bool
		resultCh = make(chan result, 1)
	)
	go func() {
		v, err := f()
		mu.Lock()
		defer mu.Unlock()
		if gone {
			if abandon != nil && err == nil {
				abandon(v)
			}
			return
		}
		resultCh <- result{v, err}
	}()
	select {
	case r := <-resultCh:
		return r.v, r.err
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		select {
		case r := <-resultCh: // it finished meanwhile: use it rather than leak it
			return r.v, r.err
		default:
		}
		gone = true
		return zero, fmt.Errorf("%w (a libvirt call did not return in time and finishes in the background)", ctx.Err())
	}
}

// bounded0 is bounded for calls that return only an error.
func bounded0(ctx context.Context, inflight *sync.WaitGroup, f func() error) error {
	_, err := bounded(ctx, inflight, func() (struct{}, error) { return struct{}{}, f() }, nil)
	return err
}

// eventLoop is libvirt's default event loop, which keepalive needs. libvirt has one
// per process, so this is process state, started once.
var eventLoop struct {
	once sync.Once
	err  error
}

func startEventLoop(log *slog.Logger) error {
	eventLoop.once.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			eventLoop.err = fmt.Errorf("register libvirt event loop: %w", err)
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					log.Error("libvirt event loop", "err", err)
					time.Sleep(time.Second) // never spin on a broken loop
				}
			}
		}()
	})
	return eventLoop.err
}

// connect opens a connection with keepalive, bounded by ctx and connectTimeout.
func connect(ctx context.Context, uri string, log *slog.Logger) (*libvirt.Connect, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := bounded(ctx, nil, func() (*libvirt.Connect, error) { return libvirt.NewConnect(uri) },
		func(c *libvirt.Connect) { c.Close() })
	if err != nil {
		return nil, fmt.Errorf("connect to libvirt at %s (is libvirtd running?): %w", uri, err)
	}
	if err := conn.SetKeepAlive(keepAliveInterval, keepAliveCount); err != nil {
		// In-process drivers (test:///default) have no connection to keep alive.
		log.Debug("libvirt connection without keepalive", "uri", uri, "err", err)
	}
	return conn, nil
}

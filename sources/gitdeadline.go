package sources

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultGitTimeout bounds one git operation when GitConfig.Timeout is zero: long
// enough to fetch a large fleet repository over a slow link, short enough that a
// remote that never answers does not keep a leader stuck (and its lock held) for long.
const DefaultGitTimeout = 2 * time.Minute

// ErrTimeout means a git operation did not finish within GitConfig.Timeout. It comes
// with ErrFetch for a fetch, and with context.DeadlineExceeded.
var ErrTimeout = errors.New("git operation timed out")

// timeoutError is the cause of the context an operation runs under, so that the
// source's own deadline is told apart from the caller's.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%v after %s", ErrTimeout, e.after)
}

func (e *timeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}

// withTimeout bounds ctx by the configured timeout.
func (g *Git) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, g.cfg.Timeout, &timeoutError{after: g.cfg.Timeout})
}

// ctxError is why ctx is done: the source's timeout or the caller's cancellation.
func ctxError(ctx context.Context) error {
	var te *timeoutError
	if cause := context.Cause(ctx); errors.As(cause, &te) {
		return te
	}
	return ctx.Err()
}

// locked runs f with the repository lock held, and returns when f returns or when ctx
// is done, whichever comes first. go-git does not honour ctx everywhere: its git://
// transport dials with no deadline, and a local fetch waits for git-upload-pack. When
// ctx ends first, f is left to finish in the background, still holding the lock so
// that nothing else touches the clone meanwhile; later calls wait for the lock no
// longer than their own ctx allows. So no call outlives its ctx, whatever the remote
// does.
func locked[T any](ctx context.Context, g *Git, f func(context.Context) (T, error)) (T, error) {
	var zero T
	select {
	case g.lock <- struct{}{}:
	case <-ctx.Done():
		return zero, fmt.Errorf("wait for an earlier git operation that has not finished: %w", ctxError(ctx))
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-g.lock }()
		v, err := f(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && ctx.Err() != nil {
			// What go-git made of the cancellation ("use of closed network
			// connection"...) says less than why.
			return zero, ctxError(ctx)
		}
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctxError(ctx)
	}
}

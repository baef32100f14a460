package reconciler

import (
	"context"
	"fmt"

	"github.com/drover-dev/drover/discovery"
)

// Fence is a leadership term: Guard says whether this Drover still leads and returns a
// context that ends when it stops leading (the lock's session lapses). Every mutating
// step (create, shutdown, destroy, register, deregister, maintenance, KV put) runs
// under it, so a Drover cut off from Consul stops acting within the lock-delay instead
// of finishing its steps while a standby takes over. *discovery.Leadership is one.
type Fence interface {
	Guard(ctx context.Context) (context.Context, context.CancelFunc, error)
}

type fenceKey struct{}

// WithFence returns ctx carrying f: the leader loop hands it to Runner.Run for one
// leadership term, and every mutating step a pass under it takes is fenced.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// fenceOf is the fence ctx carries, or nil: no leader lock, nothing to fence.
func fenceOf(ctx context.Context) Fence {
	f, _ := ctx.Value(fenceKey{}).(Fence)
	return f
}

// fenced runs a mutating step under ctx's fence, if any: not at all when the guard says
// this Drover no longer leads, and with its context ended when the lease lapses.
func fenced(ctx context.Context, step func(context.Context) error) error {
	f := fenceOf(ctx)
	if f == nil {
		return step(ctx)
	}
	gctx, cancel, err := f.Guard(ctx)
	if err != nil {
		return fmt.Errorf("not leader, step not taken: %w", err)
	}
	defer cancel()
	return step(gctx)
}

// finish runs a mutating step that must complete once begun, so cancellation (a signal)
// lands between steps and never leaves a half-made or half-destroyed VM. It is still
// bounded by OpTimeout, and still cut by the fence: losing leadership is not a signal
// to ride out, since a standby is about to act on the same VMs.
func (r *Reconciler) finish(ctx context.Context, step func(context.Context) error) error {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout)
	defer cancel()
	return fenced(c, step)
}

var _ Fence = (*discovery.Leadership)(nil)

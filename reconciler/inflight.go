package reconciler

import (
	"errors"
	"sync"
)

// inflight are the rollouts running in the background, at most one per service. Nothing
// in it is needed to plan: a restarted Drover finds the same work from the world. It
// only keeps a pass from starting a second rollout of a service whose first is still
// draining or on its health gate, and carries their errors to the next pass.
type inflight struct {
	mu       sync.Mutex
	running  map[string]bool
	outcomes []error
	wg       sync.WaitGroup
	// finished receives (without blocking the rollout) when one ends.
	finished chan struct{}
}

func newInflight() *inflight {
	return &inflight{running: map[string]bool{}, finished: make(chan struct{}, 1)}
}

// start runs fn in the background as service's rollout, unless one is running: false.
func (w *inflight) start(service string, fn func() error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[service] {
		return false
	}
	w.running[service] = true
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		err := fn()
		w.mu.Lock()
		delete(w.running, service)
		if err != nil {
			w.outcomes = append(w.outcomes, err)
		}
		w.mu.Unlock()
		select {
		case w.finished <- struct{}{}:
		default:
		}
	}()
	return true
}

// busy is the set of services with a rollout running now.
func (w *inflight) busy() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.running))
	for s := range w.running {
		out[s] = true
	}
	return out
}

// takeOutcomes returns, once, the errors of the rollouts that ended since the last call.
func (w *inflight) takeOutcomes() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := errors.Join(w.outcomes...)
	w.outcomes = nil
	return err
}

func (w *inflight) wait() { w.wg.Wait() }

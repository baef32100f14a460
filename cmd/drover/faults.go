package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/drover-dev/drover/reconciler"
)

// crashEnv names a reconciler hook point at which drover kills itself with SIGKILL:
// DROVER_CRASH_AT=<point>[:<n>] dies at the n-th time the point is reached (default 1).
// It exists for fault-injection tests, which prove that a Drover killed at any step of a
// rollout converges without leaks when started again; it has no other use.
const crashEnv = "DROVER_CRASH_AT"

// crashHook returns the reconciler hook for DROVER_CRASH_AT, or nil when it is unset.
func crashHook(log *slog.Logger) (func(string), error) {
	spec, ok := os.LookupEnv(crashEnv)
	if !ok || spec == "" {
		return nil, nil
	}
	point, nth := spec, 1
	if i := strings.LastIndexByte(spec, ':'); i >= 0 {
		n, err := strconv.Atoi(spec[i+1:])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want <point>[:<n>] with n >= 1", crashEnv, spec)
		}
		point, nth = spec[:i], n
	}
	known := false
	for _, p := range reconciler.Points {
		known = known || p == point
	}
	if !known {
		return nil, fmt.Errorf("%s=%q: unknown point; want one of %s", crashEnv, spec, strings.Join(reconciler.Points, ", "))
	}
	log.Warn("fault injection armed: drover will kill itself", "point", point, "hit", nth)
	var (
		mu   sync.Mutex
		hits int
	)
	return func(p string) {
		if p != point {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if hits++; hits == nth {
			log.Warn("fault injection: SIGKILL", "point", p, "hit", hits)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way; never continue past the point
		}
	}, nil
}

package hypervisortest

import (
	"log/slog"
	"strings"
	"testing"
)

// Logger returns a debug-level logger that writes through t.Log, so a driver's log
// lines appear beside the test that caused them, and only when it fails or runs with -v.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

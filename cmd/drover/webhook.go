package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/drover-dev/drover/internal/redact"
	"github.com/drover-dev/drover/internal/secretfile"
	"github.com/drover-dev/drover/reconciler"
	"github.com/drover-dev/drover/sources"
	"github.com/drover-dev/drover/webhook"
)

// newWebhook builds /hooks/git from --webhook-secret-file: a verified push that moves
// the tracked ref runs the runner's next round at once. The secret joins the masked set.
func newWebhook(path string, ref sources.Ref, runner *reconciler.Runner, secrets *redact.Set, log *slog.Logger) (*webhook.Handler, error) {
	secret, err := secretfile.ReadLine(path)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	secrets.Add(secret)
	h, err := webhook.New(webhook.Config{
		Secret: []byte(secret),
		Tracks: ref.Moves,
		Trigger: func(ctx context.Context) error {
			err := runner.Reconcile(ctx)
			if errors.Is(err, reconciler.ErrNotRunning) {
				// A standby: the leader, with its own webhook or poll, acts.
				return nil
			}
			return err
		},
		Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file %s: %w", path, err)
	}
	return h, nil
}

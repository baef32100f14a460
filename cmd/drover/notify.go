package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/drover-dev/drover/internal/secretfile"
	"github.com/drover-dev/drover/notify"
)

// notifyOptions are drover run's --notify-* flags.
type notifyOptions struct {
	urls       stringList
	secretFile string
	format     string
}

// minNotifySecret: a shorter HMAC key is guessable.
const minNotifySecret = 16

func (n *notifyOptions) register(fs *flag.FlagSet) {
	fs.Var(&n.urls, "notify-url", "POST each event to this http(s) URL (repeatable; DROVER_NOTIFY_URL takes a\n"+
		"comma-separated list). Delivery is asynchronous, retried with backoff, and never slows a pass.\n"+
		"Only the scheme and host are ever logged: the path and query often hold the receiver's token")
	fs.StringVar(&n.secretFile, "notify-secret-file", "", "file holding a secret (at least 16 bytes) to sign notifications with:\n"+
		"X-Drover-Signature: sha256=HMAC-SHA256(secret, X-Drover-Timestamp + \".\" + body)")
	fs.StringVar(&n.format, "notify-format", "json", "notification body: json (the event), slack ({\"text\"}: Slack, Mattermost…)\n"+
		"or matrix ({\"text\",\"html\"}: matrix-hookshot)")
}

// validate refuses bad receivers at start-up; notify.New checks without sending.
func (n *notifyOptions) validate() []string {
	var problems []string
	f, err := notify.ParseFormat(n.format)
	if err != nil {
		problems = append(problems, "--notify-format: "+err.Error())
	}
	if len(n.urls) == 0 {
		if n.secretFile != "" {
			problems = append(problems, "--notify-secret-file needs --notify-url")
		}
		return problems
	}
	if _, err := notify.New(notify.Config{URLs: n.urls, Format: f}, nil); err != nil && f != "" {
		problems = append(problems, "--notify-url: "+err.Error())
	}
	return problems
}

// newNotifier is the notifier --notify-url asks for, nil without one; it reads the
// signing secret (bounded, regular file only).
func newNotifier(n notifyOptions, log *slog.Logger) (*notify.Notifier, error) {
	if len(n.urls) == 0 {
		return nil, nil
	}
	cfg := notify.Config{URLs: n.urls, Format: notify.Format(n.format)}
	if n.secretFile != "" {
		s, err := secretfile.ReadLine(n.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--notify-secret-file: %w", err)
		}
		if len(s) < minNotifySecret {
			return nil, fmt.Errorf("--notify-secret-file %s: want at least %d bytes", n.secretFile, minNotifySecret)
		}
		cfg.Secret = []byte(s)
	}
	return notify.New(cfg, log)
}

// startNotifier delivers view's events to n until ctx ends; wait returns once what was
// queued went out (or notify's drain time passed). Give it a ctx that ends after the
// runner has returned, so the events of the shutdown itself are sent too.
func startNotifier(ctx context.Context, n *notify.Notifier, view notify.Subscriber) (wait func()) {
	if n == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx, view)
	}()
	return func() { <-done }
}

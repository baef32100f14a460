package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/drover-dev/drover/internal/redact"
)

// redactingHandler masks credentials in every log line, whichever package wrote it:
// URL user info anywhere (redact.String) and, verbatim, the secrets Drover was given
// (the password or token in --repo), which may show up outside a URL, in a git
// server's message say. The packages redact what they print too; this is the last
// line that holds whatever one of them forgets.
type redactingHandler struct {
	next    slog.Handler
	secrets []string
}

func newRedactingHandler(next slog.Handler, secrets []string) slog.Handler {
	return &redactingHandler{next: next, secrets: secrets}
}

func (h *redactingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.clean(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = h.attr(a)
	}
	return &redactingHandler{next: h.next.WithAttrs(clean), secrets: h.secrets}
}

func (h *redactingHandler) WithGroup(name string) slog.Handler {
	return &redactingHandler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h *redactingHandler) clean(s string) string { return redact.Secrets(s, h.secrets...) }

func (h *redactingHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.clean(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, ga := range g {
			clean[i] = h.attr(ga)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, h.clean(x.Error()))
		case fmt.Stringer:
			return slog.String(a.Key, h.clean(x.String()))
		case []string:
			clean := make([]string, len(x))
			for i, s := range x {
				clean[i] = h.clean(s)
			}
			return slog.Any(a.Key, clean)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// urlSecrets are the credentials in a repository URL, to be masked wherever they
// appear: its password, or a user name that is a token (https://TOKEN@host/…).
func urlSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return nil
	}
	if p, ok := u.User.Password(); ok && len(p) >= minVerbatimSecret {
		return []string{p, url.QueryEscape(p), url.PathEscape(p)}
	}
	if name := u.User.Username(); u.Scheme != "ssh" && len(name) >= minTokenUser {
		return []string{name}
	}
	return nil
}

// Secrets shorter than these are masked only inside URLs: replacing a two-letter
// password, or a user name like "git", in every line would garble the logs.
const (
	minVerbatimSecret = 4
	minTokenUser      = 16
)

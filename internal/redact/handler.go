package redact

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
)

// handler masks credentials in every log line, whichever package wrote it:
// URL user info anywhere (redact.String) and, verbatim, the secrets Drover was given
// (the password or token in --repo), which may show up outside a URL, in a git
// server's message say. The packages redact what they print too; this is the last
// line that holds whatever one of them forgets.
type handler struct {
	next    slog.Handler
	secrets *Set
	// scope is what With and WithGroup added, kept unmasked and applied to next at
	// each line, so that a secret added to the set later is masked in them too.
	scope []scope
}

// scope is one WithAttrs (attrs) or WithGroup (group) call.
type scope struct {
	group string
	attrs []slog.Attr
}

// Handler returns a slog.Handler that masks URL credentials and each of secrets in
// every message and attribute before next sees them.
func Handler(next slog.Handler, secrets []string) slog.Handler {
	return SetHandler(next, NewSet(secrets...))
}

// SetHandler is Handler masking the secrets in the set at the time of each line, so
// secrets added later (a rotated token) are masked too.
func SetHandler(next slog.Handler, secrets *Set) slog.Handler {
	return &handler{next: next, secrets: secrets}
}

func (h *handler) with(sc scope) *handler {
	return &handler{next: h.next, secrets: h.secrets, scope: append(h.scope[:len(h.scope):len(h.scope)], sc)}
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	next := h.next
	for _, sc := range h.scope {
		if sc.group != "" {
			next = next.WithGroup(sc.group)
			continue
		}
		clean := make([]slog.Attr, len(sc.attrs))
		for i, a := range sc.attrs {
			clean[i] = h.attr(a)
		}
		next = next.WithAttrs(clean)
	}
	out := slog.NewRecord(r.Time, r.Level, h.clean(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return next.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return h.with(scope{attrs: as})
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(scope{group: name})
}

func (h *handler) clean(s string) string { return h.secrets.String(s) }

func (h *handler) attr(a slog.Attr) slog.Attr {
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

// URLSecrets are the credentials in a repository URL, to be masked wherever they
// appear: its password, or a user name that is a token (https://TOKEN@host/…).
func URLSecrets(raw string) []string {
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

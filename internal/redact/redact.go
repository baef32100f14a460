// Package redact keeps credentials out of what Drover prints: logs, errors, /status and
// Consul. A repository or image URL may carry a user and password or token
// (https://user:token@host/…); everything that shows a URL shows it through here.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a secret wherever it is shown.
const Mask = "xxxxx"

// URL returns raw with any password or token in its user info, and the values of
// query parameters that commonly carry credentials, replaced by Mask. A string that
// does not parse as a URL is returned with credentials masked as well as can be
// found (scheme://user:pass@ patterns).
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return String(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else if u.User.Username() != "" && u.Scheme != "ssh" {
			// https://TOKEN@host: a bare user name over HTTP is usually a token.
			u.User = url.User(Mask)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if secretParam(k) {
				q.Set(k, Mask)
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

func secretParam(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"token", "password", "passwd", "secret", "key", "signature", "sig", "auth", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// userInfo matches the user info of a URL inside free text: scheme://user[:pass]@.
var userInfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s:]*)(:[^/@\s]*)?@`)

// String masks URL credentials anywhere in s (an error message that quotes a URL).
func String(s string) string {
	return userInfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := userInfo.FindStringSubmatch(m)
		scheme, user, pass := sub[1], sub[2], sub[3]
		switch {
		case pass != "":
			return scheme + user + ":" + Mask + "@"
		case scheme == "ssh://":
			return m
		default:
			return scheme + Mask + "@"
		}
	})
}

// Secrets masks each of the given secret values (a token read from a file, say) and
// URL credentials in s. Empty secrets are ignored.
func Secrets(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return String(s)
}

// Error wraps err so that its message is redacted while errors.Is and errors.As still
// see the original chain.
func Error(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := Secrets(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

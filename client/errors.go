package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Sentinels for errors.Is.
var (
	// ErrUnreachable: no Drover answered at all (refused, timed out, reset, no such
	// host). The only error after which a caller may turn to Consul instead.
	ErrUnreachable = errors.New("no drover answered")
	// ErrUnauthorized: the server wants a (different) bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotFound: the server knows no such service (or path).
	ErrNotFound = errors.New("not found")
)

// UnreachableError is a request that got no HTTP answer.
type UnreachableError struct {
	Server, Op string
	Err        error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("no drover answered at %s: %v", e.Server, e.Err)
}

func (e *UnreachableError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

// APIError is an answer with a non-2xx status; Message is the server's {"error": …}.
type APIError struct {
	Op      string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return fmt.Sprintf("%s: %d: %s (give the daemon's --listen-token-file token with --token-file)", e.Op, e.Status, msg)
	}
	return fmt.Sprintf("%s: %d: %s", e.Op, e.Status, msg)
}

// Is makes errors.Is(err, ErrUnauthorized) and errors.Is(err, ErrNotFound) work.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	}
	return false
}

// apiError reads a non-2xx answer: the server's {"error": …} when it sent one, else
// the first line of its body (bounded, printable) so a proxy's page still says something.
func apiError(op string, resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(raw, &body) == nil && body.Error != "" {
		msg = body.Error
	} else if line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n"); line != "" {
		msg = line
	}
	return &APIError{Op: op, Status: resp.StatusCode, Message: printable(msg, 300)}
}

// printable keeps what a server said readable on a terminal: no control characters
// (an escape sequence could rewrite the screen), at most n bytes.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

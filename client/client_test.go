package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// TestClientUnreachable: only an absent HTTP answer is ErrUnreachable (the fallback's
// trigger); an answer of any status is not.
func TestClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	silent := testenv.ServeSilent(t).Addr
	dropped := testenv.UnansweredAddr(t)
	answers := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, tc := range []struct {
		name, server string
		unreachable  bool
		is           error
		want         string
	}{
		{"refused", refused, true, ErrUnreachable, "no drover answered at http://" + refused + ": dial tcp"},
		{"accepts, never answers", silent, true, ErrUnreachable, "no answer within 300ms"},
		{"SYN dropped", dropped, true, ErrUnreachable, "no drover answered at http://" + dropped},
		{"401", answers(401, `{"error":"bad token"}`), false, ErrUnauthorized, "401: bad token (give the daemon's --listen-token-file"},
		{"404 not drover", answers(404, "404 page not found\n"), false, ErrNotFound, "404: 404 page not found"},
		{"500", answers(500, `{"error":"consul unavailable"}`), false, nil, "500: consul unavailable"},
		{"redirect not followed", answers(302, ""), false, nil, "302: Found"},
		{"control characters", answers(400, "bad \x1b[2Jthing"), false, nil, "400: bad  [2Jthing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(Config{Server: tc.server, Timeout: 300 * time.Millisecond, Token: "tok-123"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Status(context.Background())
			if got := errors.Is(err, ErrUnreachable); got != tc.unreachable {
				t.Errorf("errors.Is(ErrUnreachable): got %v, want %v (err %v)", got, tc.unreachable, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want errors.Is %v", err, tc.is)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "tok-123") {
				t.Errorf("got %v, want %q and no token", err, tc.want)
			}
		})
	}
	// The caller's own cancellation is not "no drover answered".
	c, _ := New(Config{Server: silent, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.Status(ctx); errors.Is(err, ErrUnreachable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled, not ErrUnreachable", err)
	}
}

func TestClientSendsTokenAndPaths(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		w.Write([]byte("[]"))
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{Server: srv.URL + "/", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c.History(ctx, "web", 5)
	c.Suspend(ctx, "web-2", "x")
	if err := c.Resume(ctx, "../reconcile"); err == nil || !strings.Contains(err.Error(), "not a service name") {
		t.Errorf("Resume(../reconcile): got %v, want a refusal", err)
	}
	c.Reconcile(ctx)
	want := []string{"GET /api/v1/history?limit=5&service=web Bearer tok", "POST /api/v1/services/web-2/suspend Bearer tok", "POST /api/v1/reconcile Bearer tok"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n got %q\nwant %q", got, want)
	}
}

// TestWatchStopsOnRefusal: a refused token will not mend by waiting.
func TestWatchStopsOnRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	c, _ := New(Config{Server: srv.URL})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Watch(ctx, "", WatchOptions{}, nil); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Watch: got %v, want ErrUnauthorized at once", err)
	}
}

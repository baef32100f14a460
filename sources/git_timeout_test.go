package sources

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// hangGuard is far above any Timeout the tests configure: reaching it means the call
// hung, which is the bug under test, so the test fails instead of blocking go test.
const hangGuard = 90 * time.Second

// readAsync runs g.Read and returns its error, or fails the test if it does not come
// back before hangGuard.
func readAsync(t *testing.T, ctx context.Context, g *Git) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := g.Read(ctx)
		done <- err
	}()
	return done
}

func waitErr(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		t.Fatalf("%s: still blocked after %s", what, hangGuard)
		return nil
	}
}

// A git server that accepts the connection and never answers must not block Drover:
// without a deadline, `drover run` hung forever holding the leader lock.
func TestGitTimeoutOnSilentServer(t *testing.T) {
	srv := testenv.ServeSilent(t)
	for _, tc := range []struct{ name, url string }{
		{"http", "http://" + srv.Addr + "/fleet.git"},
		{"git protocol", "git://" + srv.Addr + "/fleet.git"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepted := srv.Accepted()
			g := newGit(t, GitConfig{URL: tc.url, Dir: filepath.Join(t.TempDir(), "clone"), Timeout: 2 * time.Second})
			for _, attempt := range []string{"first read", "read while the first may still be stuck"} {
				err := waitErr(t, readAsync(t, context.Background(), g), attempt)
				t.Logf("%s: %v", attempt, err)
				if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("%s: error = %v; want ErrFetch, ErrTimeout and context.DeadlineExceeded", attempt, err)
				}
				for _, want := range []string{tc.url, "timed out"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: error %q does not contain %q", attempt, err, want)
					}
				}
			}
			if srv.Accepted() == accepted {
				t.Errorf("the server accepted no connection: the timeout was not what stopped the read")
			}
		})
	}
}

// Cancelling the context (SIGTERM) unblocks a fetch stuck on a silent server, whatever
// the timeout.
func TestGitCancelOnSilentServer(t *testing.T) {
	srv := testenv.ServeSilent(t)
	for _, tc := range []struct{ name, url string }{
		{"http", "http://" + srv.Addr + "/fleet.git"},
		{"git protocol", "git://" + srv.Addr + "/fleet.git"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepted := srv.Accepted()
			g := newGit(t, GitConfig{URL: tc.url, Dir: filepath.Join(t.TempDir(), "clone"), Timeout: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := readAsync(t, ctx, g)
			// Cancel once the fetch is connected and waiting for an answer.
			for deadline := time.Now().Add(hangGuard); srv.Accepted() == accepted; {
				if time.Now().After(deadline) {
					t.Fatalf("no connection reached the server")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			err := waitErr(t, done, "read after cancel")
			t.Logf("read after cancel: %v", err)
			if !errors.Is(err, ErrFetch) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
				t.Errorf("error = %v; want ErrFetch and context.Canceled, not ErrTimeout", err)
			}
		})
	}
}

func TestNewGitTimeout(t *testing.T) {
	if got := newGit(t, GitConfig{URL: "/srv/fleet"}).Config().Timeout; got != DefaultGitTimeout {
		t.Errorf("default Timeout = %s, want %s", got, DefaultGitTimeout)
	}
	if _, err := NewGit(GitConfig{URL: "/srv/fleet", Timeout: -time.Second}, nil); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("NewGit with a negative timeout = %v, want an error about the timeout", err)
	}
}

// A remote whose host never completes the TCP handshake (a firewall dropping packets):
// go-git dials git:// with no deadline at all, so only running the fetch under the
// source's own deadline bounds it.
func TestGitTimeoutOnUnansweredConnect(t *testing.T) {
	addr := testenv.UnansweredAddr(t)
	for _, tc := range []struct{ name, url string }{
		{"http", "http://" + addr + "/fleet.git"},
		{"git protocol", "git://" + addr + "/fleet.git"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGit(t, GitConfig{URL: tc.url, Dir: filepath.Join(t.TempDir(), "clone"), Timeout: 2 * time.Second})
			// The second read may find the first still stuck in its connect: it
			// gives up waiting for it within the timeout too.
			for _, attempt := range []string{"first read", "second read"} {
				err := waitErr(t, readAsync(t, context.Background(), g), attempt)
				t.Logf("%s: %v", attempt, err)
				if !errors.Is(err, ErrFetch) || !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), tc.url) {
					t.Errorf("%s: error = %v; want ErrFetch and ErrTimeout naming %s", attempt, err, tc.url)
				}
			}
			// Reading a commit from the clone does not wait for ever either.
			done := make(chan error, 1)
			go func() {
				_, err := g.Fleet(context.Background(), strings.Repeat("a", 40))
				done <- err
			}()
			if err := waitErr(t, done, "Fleet"); err == nil {
				t.Errorf("Fleet of a commit never fetched succeeded")
			}
		})
	}
}

package discovery

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// TestConsulIndexRules feeds the index tracker answers as Consul could send them and
// checks the index each next round blocks on.
func TestConsulIndexRules(t *testing.T) {
	steps := []struct {
		got      uint64 // the answer's X-Consul-Index
		wantNews bool
		wantWait uint64 // index the next round blocks on
	}{
		{got: 10, wantNews: true, wantWait: 10},  // first answer
		{got: 10, wantNews: false, wantWait: 10}, // the wait ran out
		{got: 12, wantNews: true, wantWait: 12},  // a change
		{got: 4, wantNews: true, wantWait: 0},    // backwards (restart): read afresh
		{got: 5, wantNews: true, wantWait: 5},    // the fresh read
		{got: 0, wantNews: true, wantWait: 0},    // backwards to 0: read afresh
		{got: 0, wantNews: true, wantWait: 1},    // never block on 0
		{got: 0, wantNews: false, wantWait: 1},   // still 0: blocks on 1, no spin
		{got: 7, wantNews: true, wantWait: 7},
	}
	var i consulIndex
	if i.wait() != 0 {
		t.Fatalf("first round blocks on %d, want 0 (a plain read)", i.wait())
	}
	for n, s := range steps {
		news := i.observe(s.got)
		if news != s.wantNews || i.wait() != s.wantWait {
			t.Errorf("step %d: answer index %d: got news=%v, next wait index %d; want news=%v, %d",
				n, s.got, news, i.wait(), s.wantNews, s.wantWait)
		}
	}
}

// TestFollowRounds runs the loop against a scripted endpoint: the index each round
// sends, a wait inside the call timeout, errors returned or retried.
func TestFollowRounds(t *testing.T) {
	c, err := New(Config{Address: "127.0.0.1:1", CallTimeout: time.Second}, testLogger(t)) // never contacted
	if err != nil {
		t.Fatal(err)
	}
	t.Run("indexes and waits", func(t *testing.T) {
		answers := []uint64{3, 3, 9, 2, 6}
		var sent []uint64
		err := c.follow(context.Background(), blockingQuery{
			wait: func() time.Duration { return time.Hour },
			get: func(q *api.QueryOptions) (*api.QueryMeta, error) {
				if q.WaitTime <= 0 || q.WaitTime > c.timeout/2 {
					t.Errorf("round %d: wait %s, want within (0, %s]", len(sent), q.WaitTime, c.timeout/2)
				}
				if d, ok := q.Context().Deadline(); !ok || time.Until(d) > c.timeout {
					t.Errorf("round %d: call deadline %v (set %v), want within the call timeout %s", len(sent), d, ok, c.timeout)
				}
				sent = append(sent, q.WaitIndex)
				return &api.QueryMeta{LastIndex: answers[len(sent)-1]}, nil
			},
			answer: func(bool) (bool, error) { return len(sent) == len(answers), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []uint64{0, 3, 3, 9, 0}
		if fmt.Sprint(sent) != fmt.Sprint(want) {
			t.Errorf("wait indexes sent: got %v, want %v", sent, want)
		}
	})
	t.Run("error without retry ends the loop", func(t *testing.T) {
		boom := errors.New("boom")
		rounds := 0
		err := c.follow(context.Background(), blockingQuery{
			get:    func(*api.QueryOptions) (*api.QueryMeta, error) { rounds++; return nil, boom },
			answer: func(bool) (bool, error) { t.Error("answer called after an error"); return true, nil },
		})
		if !errors.Is(err, boom) || rounds != 1 {
			t.Errorf("got %v after %d rounds, want boom after 1", err, rounds)
		}
	})
	t.Run("error with retry backs off until ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		rounds := 0
		err := c.follow(ctx, blockingQuery{
			retry: true,
			get: func(*api.QueryOptions) (*api.QueryMeta, error) {
				rounds++
				if rounds == 2 {
					cancel() // during the second round's backoff wait
				}
				return nil, errors.New("down")
			},
			answer: func(bool) (bool, error) { return true, nil },
		})
		if !errors.Is(err, context.Canceled) || rounds != 2 {
			t.Errorf("got %v after %d rounds, want context.Canceled after 2", err, rounds)
		}
	})
}

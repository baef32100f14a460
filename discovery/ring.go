package discovery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/internal/backoff"
)

// Ring is a bounded log in Consul's KV store: a head key holding the last sequence
// number appended, and Size slots, the entry of sequence number s in slot s mod Size, so
// the newest Size entries are kept and older ones are overwritten. Appends from several
// processes (a leader and a standby taking over) are serialized by a check-and-set on
// the head, so sequence numbers are gap-free and never reused.
type Ring struct {
	// Prefix ends in "/": the head is Prefix+"head", the slots Prefix+"slot/<n>".
	Prefix string
	Size   int
}

// MaxRingEntry bounds one entry: far below Consul's 512 KiB value limit, so a ring of a
// thousand entries stays a few megabytes at worst.
const MaxRingEntry = 64 << 10

// ringAttempts bounds an append's retries when other writers win the check-and-set.
const ringAttempts = 50

// ErrRingContended is wrapped when an append lost the check-and-set on every attempt.
var ErrRingContended = errors.New("ring head contended")

func (r Ring) check(op string) error {
	if r.Prefix == "" || strings.HasPrefix(r.Prefix, "/") || !strings.HasSuffix(r.Prefix, "/") || r.Size <= 0 {
		return fmt.Errorf("ring %s: prefix %q, size %d: want a prefix ending in / without a leading /, and a size above 0", op, r.Prefix, r.Size)
	}
	return nil
}

func (r Ring) head() string { return r.Prefix + "head" }

func (r Ring) slot(seq uint64) string {
	return r.Prefix + "slot/" + strconv.FormatUint(seq%uint64(r.Size), 10)
}

// RingAppend appends one entry: encode gets the entry's sequence number (1 for the first
// of a ring) and returns its value. The head and the slot are written in one
// transaction that fails when another writer moved the head since it was read; then
// the head is read again and encode called again with the next number.
func (c *Client) RingAppend(ctx context.Context, ring Ring, encode func(seq uint64) ([]byte, error)) (uint64, error) {
	if err := ring.check("append"); err != nil {
		return 0, err
	}
	bo := backoff.Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond}
	for range ringAttempts {
		head, index, err := c.ringHead(ctx, ring)
		if err != nil {
			return 0, err
		}
		seq := head + 1
		value, err := encode(seq)
		if err != nil {
			return 0, fmt.Errorf("ring append %s: encode %d: %w", ring.Prefix, seq, err)
		}
		if len(value) > MaxRingEntry {
			return 0, fmt.Errorf("ring append %s: entry %d is %d bytes, over %d", ring.Prefix, seq, len(value), MaxRingEntry)
		}
		// Index 0 with cas means "only if the head does not exist yet".
		ops := api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: ring.head(), Value: []byte(strconv.FormatUint(seq, 10)), Index: index}},
			{KV: &api.KVTxnOp{Verb: api.KVSet, Key: ring.slot(seq), Value: value}},
		}
		cctx, cancel := c.call(ctx)
		ok, resp, _, err := c.api.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(cctx))
		cancel()
		if err != nil {
			return 0, fmt.Errorf("ring append %s: %w", ring.Prefix, c.classify(ctx, err))
		}
		if ok {
			return seq, nil
		}
		if resp != nil && !casLost(resp.Errors) {
			return 0, fmt.Errorf("ring append %s: transaction refused: %s", ring.Prefix, txnErrors(resp.Errors))
		}
		if !backoff.Sleep(ctx, bo.Next()) {
			return 0, ctx.Err()
		}
	}
	return 0, fmt.Errorf("ring append %s: %w after %d attempts", ring.Prefix, ErrRingContended, ringAttempts)
}

// ringHead reads the head: the last sequence number (0 for an empty ring) and the
// index to check-and-set it against.
func (c *Client) ringHead(ctx context.Context, ring Ring) (uint64, uint64, error) {
	cctx, cancel := c.call(ctx)
	defer cancel()
	pair, _, err := c.api.KV().Get(ring.head(), (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return 0, 0, fmt.Errorf("ring head %s: %w", ring.head(), c.classify(ctx, err))
	}
	if pair == nil {
		return 0, 0, nil
	}
	head, err := strconv.ParseUint(string(pair.Value), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("ring head %s: %q is not a sequence number: %w", ring.head(), pair.Value, err)
	}
	return head, pair.ModifyIndex, nil
}

// casLost reports whether a rolled-back transaction failed only on the head's
// check-and-set (operation 0): another writer appended first.
func casLost(errs api.TxnErrors) bool {
	for _, e := range errs {
		if e.OpIndex != 0 {
			return false
		}
	}
	return true
}

func txnErrors(errs api.TxnErrors) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, fmt.Sprintf("op %d: %s", e.OpIndex, e.What))
	}
	return strings.Join(parts, "; ")
}

// RingRead returns the ring's head and its entries' values, in one consistent read,
// in no particular order: the caller orders them by the sequence number it encoded.
// Slots beyond Size (left by a larger ring) are returned too; the caller keeps only
// the entries above head - Size.
func (c *Client) RingRead(ctx context.Context, ring Ring) (uint64, [][]byte, error) {
	if err := ring.check("read"); err != nil {
		return 0, nil, err
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	pairs, _, err := c.api.KV().List(ring.Prefix, (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return 0, nil, fmt.Errorf("ring read %s: %w", ring.Prefix, c.classify(ctx, err))
	}
	var head uint64
	values := make([][]byte, 0, len(pairs))
	for _, p := range pairs {
		switch {
		case p.Key == ring.head():
			if head, err = strconv.ParseUint(string(p.Value), 10, 64); err != nil {
				return 0, nil, fmt.Errorf("ring read %s: head %q is not a sequence number: %w", ring.Prefix, p.Value, err)
			}
		case strings.HasPrefix(p.Key, ring.Prefix+"slot/"):
			values = append(values, p.Value)
		}
	}
	return head, values, nil
}

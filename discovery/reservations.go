package discovery

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// KVCreate stores value at key only if the key does not exist (a check-and-set on
// index 0), atomically across every Drover talking to the cluster. It reports whether
// this call created it; false means someone holds the key already.
func (c *Client) KVCreate(ctx context.Context, key string, value []byte) (bool, error) {
	if key == "" || strings.HasPrefix(key, "/") {
		return false, fmt.Errorf("kv create: key %q: want a non-empty key without a leading /", key)
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	ok, _, err := c.api.KV().CAS(&api.KVPair{Key: key, Value: value, ModifyIndex: 0}, (&api.WriteOptions{}).WithContext(cctx))
	if err != nil {
		return false, fmt.Errorf("kv create %s: %w", key, c.classify(ctx, err))
	}
	return ok, nil
}

// KVDelete removes key; a key that does not exist is not an error.
func (c *Client) KVDelete(ctx context.Context, key string) error {
	if key == "" || strings.HasPrefix(key, "/") {
		return fmt.Errorf("kv delete: key %q: want a non-empty key without a leading /", key)
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	if _, err := c.api.KV().Delete(key, (&api.WriteOptions{}).WithContext(cctx)); err != nil {
		return fmt.Errorf("kv delete %s: %w", key, c.classify(ctx, err))
	}
	return nil
}

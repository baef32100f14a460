package discovery

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/consul/api"
)

// KVPut stores value at key in Consul's KV store.
func (c *Client) KVPut(ctx context.Context, key string, value []byte) error {
	if key == "" || strings.HasPrefix(key, "/") {
		return fmt.Errorf("kv put: key %q: want a non-empty key without a leading /", key)
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	_, err := c.api.KV().Put(&api.KVPair{Key: key, Value: value}, (&api.WriteOptions{}).WithContext(cctx))
	if err != nil {
		return fmt.Errorf("kv put %s: %w", key, c.classify(ctx, err))
	}
	return nil
}

// KVList returns every key under prefix with its value; none is an empty map.
func (c *Client) KVList(ctx context.Context, prefix string) (map[string][]byte, error) {
	if prefix == "" || strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("kv list: prefix %q: want a non-empty prefix without a leading /", prefix)
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	pairs, _, err := c.api.KV().List(prefix, (&api.QueryOptions{}).WithContext(cctx))
	if err != nil {
		return nil, fmt.Errorf("kv list %s: %w", prefix, c.classify(ctx, err))
	}
	out := make(map[string][]byte, len(pairs))
	for _, p := range pairs {
		out[p.Key] = p.Value
	}
	return out, nil
}

// KVDelete removes key from Consul's KV store; a key that does not exist is no error.
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

package discovery

import (
	"context"
	"testing"
)

func TestKVCreateOnce(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx := context.Background()
	key := "drover/addresses/198.18.0.10"
	for i, want := range []bool{true, false} {
		got, err := c.KVCreate(ctx, key, []byte{byte('a' + i)})
		if err != nil || got != want {
			t.Fatalf("KVCreate #%d: want %v, got %v, %v", i+1, want, got, err)
		}
	}
	kv, err := c.KVList(ctx, key)
	if err != nil || string(kv[key]) != "a" {
		t.Fatalf("the first create's value must stay: got %q, %v", kv[key], err)
	}
	if err := c.KVDelete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := c.KVDelete(ctx, key); err != nil {
		t.Fatalf("deleting a missing key: %v", err)
	}
	if got, err := c.KVCreate(ctx, key, []byte("c")); err != nil || !got {
		t.Fatalf("KVCreate after delete: want true, got %v, %v", got, err)
	}
}

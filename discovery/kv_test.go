package discovery

import (
	"context"
	"strings"
	"testing"
)

func TestKV(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx := context.Background()
	got, err := c.KVList(ctx, "drover/test/")
	if err != nil || len(got) != 0 {
		t.Fatalf("KVList of an empty prefix: got %v, %v; want empty, nil", got, err)
	}
	for k, v := range map[string]string{"drover/test/a": "1", "drover/test/b": `{"x":2}`, "drover/other": "3"} {
		if err := c.KVPut(ctx, k, []byte(v)); err != nil {
			t.Fatalf("KVPut %s: %v", k, err)
		}
	}
	if err := c.KVPut(ctx, "drover/test/a", []byte("overwritten")); err != nil {
		t.Fatal(err)
	}
	got, err = c.KVList(ctx, "drover/test/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["drover/test/a"]) != "overwritten" || string(got["drover/test/b"]) != `{"x":2}` {
		t.Errorf("KVList drover/test/: got %q, want a=overwritten and b", got)
	}
	for _, bad := range []string{"", "/drover/x"} {
		if err := c.KVPut(ctx, bad, nil); err == nil || !strings.Contains(err.Error(), "key") {
			t.Errorf("KVPut(%q): got %v, want a key error", bad, err)
		}
		if _, err := c.KVList(ctx, bad); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("KVList(%q): got %v, want a prefix error", bad, err)
		}
	}
}

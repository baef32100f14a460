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

func TestKVDelete(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx := context.Background()
	if err := c.KVPut(ctx, "drover/del/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a key already gone is no error
		if err := c.KVDelete(ctx, "drover/del/a"); err != nil {
			t.Fatalf("KVDelete: %v", err)
		}
	}
	if got, err := c.KVList(ctx, "drover/del/"); err != nil || len(got) != 0 {
		t.Errorf("after KVDelete: %v, %v; want empty", got, err)
	}
	if err := c.KVDelete(ctx, "/x"); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("KVDelete(/x): %v, want a key error", err)
	}
}

func TestRingArguments(t *testing.T) {
	t.Parallel()
	c, _ := newTestClient(t)
	ctx := context.Background()
	enc := func(uint64) ([]byte, error) { return []byte("x"), nil }
	for _, bad := range []Ring{{Prefix: "", Size: 1}, {Prefix: "/a/", Size: 1}, {Prefix: "a", Size: 1}, {Prefix: "a/", Size: 0}} {
		if _, err := c.RingAppend(ctx, bad, enc); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("RingAppend(%+v): %v, want an argument error", bad, err)
		}
		if _, _, err := c.RingRead(ctx, bad); err == nil {
			t.Errorf("RingRead(%+v): nil error", bad)
		}
	}
	ring := Ring{Prefix: "drover/ringtest/", Size: 2}
	if _, err := c.RingAppend(ctx, ring, func(uint64) ([]byte, error) { return make([]byte, MaxRingEntry+1), nil }); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("RingAppend of an oversized entry: %v, want a size error", err)
	}
	for want := uint64(1); want <= 3; want++ {
		if seq, err := c.RingAppend(ctx, ring, enc); err != nil || seq != want {
			t.Fatalf("RingAppend: %d, %v; want %d", seq, err, want)
		}
	}
	if head, values, err := c.RingRead(ctx, ring); err != nil || head != 3 || len(values) != 2 {
		t.Errorf("RingRead of a ring of 2 after 3: head %d, %d values, %v; want 3 and 2", head, len(values), err)
	}
}

package hypervisor

import (
	"testing"
	"time"
)

func TestNameLocksSerialiseOneName(t *testing.T) {
	var l NameLocks
	unlock := l.Lock("web-1")
	got := make(chan struct{})
	go func() {
		u := l.Lock("web-1")
		close(got)
		u()
	}()
	// A different name is not held up by web-1.
	l.Lock("web-2")()
	select {
	case <-got:
		t.Fatal("second Lock(web-1) while held: want it to wait, got the lock")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("second Lock(web-1) after unlock: want the lock, still waiting after 10s")
	}
}

func TestNameLocksTryLock(t *testing.T) {
	var l NameLocks
	unlock := l.Lock("web-1")
	if _, ok := l.TryLock("web-1"); ok {
		t.Fatal("TryLock(web-1) while held: want false, got true")
	}
	unlock()
	u, ok := l.TryLock("web-1")
	if !ok {
		t.Fatal("TryLock(web-1) after unlock: want true, got false")
	}
	if _, ok := l.TryLock("web-1"); ok {
		t.Fatal("TryLock(web-1) while tried-locked: want false, got true")
	}
	u()
	if len(l.m) != 0 {
		t.Fatalf("after every unlock: want no names tracked, got %d", len(l.m))
	}
}

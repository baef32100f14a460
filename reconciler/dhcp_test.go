package reconciler

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/sources"
)

func dhcpSvc() sources.Service {
	s := svc("web", "v1", 1, 0)
	s.Network = sources.Network{Mode: "bridge", Bridge: "br0"}
	s.Update.HealthyDeadline = 2 * time.Second
	return s
}

func TestDHCPAddressLearnedAfterBoot(t *testing.T) {
	w := newFakeWorld()
	w.dhcpAfter = 3
	r := fakeReconciler(t, w, nil)
	if _, err := r.Pass(context.Background(), rev("c1", dhcpSvc())); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.instances) != 1 {
		t.Fatalf("want 1 instance, got %v", w.instances)
	}
	for _, in := range w.instances {
		if in.Address != "198.18.0.50" {
			t.Errorf("registered at %q, want the learned 198.18.0.50", in.Address)
		}
	}
}

func TestDHCPAddressNeverAppears(t *testing.T) {
	w := newFakeWorld()
	w.dhcpAfter = -1
	r := fakeReconciler(t, w, nil)
	res, err := r.Pass(context.Background(), rev("c1", dhcpSvc()))
	if err == nil {
		err = res.Err
	}
	if err == nil || !strings.Contains(err.Error(), "no address learned for mac 52:54:00:") ||
		!strings.Contains(err.Error(), "from the host's neighbour table") {
		t.Fatalf("want the gate to fail naming the address sources, got %v", err)
	}
}

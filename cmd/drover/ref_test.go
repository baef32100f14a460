package main

import (
	"testing"
)

// A branch given either way keeps the fleet's identity it had before --ref; another
// kind of ref is another fleet.
func TestFleetNameOfRef(t *testing.T) {
	base := options{repo: "/srv/fleet", path: "fleet.yaml"}.fleetName()
	for _, o := range []options{
		{repo: "/srv/fleet", path: "fleet.yaml", branch: "main"},
		{repo: "/srv/fleet", path: "fleet.yaml", ref: "branch:main"},
		{repo: "/srv/fleet", path: "fleet.yaml", ref: "branch:main", branch: "main"},
	} {
		if got := o.fleetName(); got != base {
			t.Errorf("fleetName(branch %q ref %q) = %s, want %s", o.branch, o.ref, got, base)
		}
	}
	if got := (options{repo: "/srv/fleet", path: "fleet.yaml", ref: "tag:v1"}).fleetName(); got == base {
		t.Errorf("fleetName(tag:v1) = the branch's %s", got)
	}
}

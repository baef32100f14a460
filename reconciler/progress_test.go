package reconciler

import (
	"fmt"
	"testing"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
)

func TestRollouts(t *testing.T) {
	v1, v2 := testService("web", "1", 2), testService("web", "2", 2)
	old1, old2 := vmOf(v1, 1), vmOf(v1, 2)
	new1, new2 := vmOf(v2, 3), vmOf(v2, 4)
	gone := vmOf(testService("api", "1", 1), 5)
	stopped := vmOf(v2, 6)
	stopped.State = hypervisor.StateShutoff
	commit := "c0ffee"
	tests := []struct {
		name      string
		vms       []hypervisor.VM
		instances []discovery.Instance
		failed    map[string]failure
		busy      map[string]bool
		want      string
	}{
		{"nothing yet", nil, nil, nil, nil, "web rolling-out 0/2 since - versions []"},
		{"booting beside the old", []hypervisor.VM{old1, old2, new1, new2}, passing(old1, old2, new1), nil, nil,
			"web rolling-out 1/2 since 2026-01-01 00:03 versions [1:2/2 2:1/2]"},
		{"draining the old", []hypervisor.VM{old1, new1, new2}, passing(new1, new2), nil, nil,
			"web rolling-out 2/2 since 2026-01-01 00:03 versions [1:0/1 2:2/2]"},
		{"converged", []hypervisor.VM{new1, new2, stopped}, passing(new1, new2), nil, nil, "web converged 2/2 since - versions [2:2/2]"},
		{"rollout still running", []hypervisor.VM{new1, new2}, passing(new1, new2), nil, map[string]bool{"web": true},
			"web rolling-out 2/2 since 2026-01-01 00:03 versions [2:2/2]"},
		{"held", []hypervisor.VM{old1, old2}, passing(old1, old2), map[string]failure{"web": {Revision: commit, SpecHash: SpecHash(v2), Reason: "deadline"}}, nil,
			"web held 0/2 since - versions [1:2/2] held deadline"},
		{"held for another commit", []hypervisor.VM{old1, old2}, passing(old1, old2), map[string]failure{"web": {Revision: "older", SpecHash: SpecHash(v2)}}, nil,
			"web rolling-out 0/2 since - versions [1:2/2]"},
		{"pruning", []hypervisor.VM{new1, new2, gone}, passing(new1, new2), nil, nil,
			"web converged 2/2 since - versions [2:2/2]; api pruning 0/0 since - versions [1:0/1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rollouts(rev(commit, v2), Observed{VMs: tt.vms, Instances: tt.instances}, tt.failed, tt.busy)
			s := ""
			for i, st := range got {
				if i > 0 {
					s += "; "
				}
				since := "-"
				if !st.Progress.Started.IsZero() {
					since = st.Progress.Started.Format("2006-01-02 15:04")
				}
				s += fmt.Sprintf("%s %s %d/%d since %s versions [", st.Name, st.Phase, st.Progress.Passing, st.Progress.Wanted, since)
				for j, v := range st.Versions {
					if j > 0 {
						s += " "
					}
					s += fmt.Sprintf("%s:%d/%d", v.Version, v.Passing, v.Total)
				}
				s += "]"
				if st.Held != nil {
					s += " held " + st.Held.Reason
				}
			}
			if s != tt.want {
				t.Errorf("\n got %s\nwant %s", s, tt.want)
			}
		})
	}
}

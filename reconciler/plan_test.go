package reconciler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

func testService(name, version string, replicas int) sources.Service {
	return sources.Service{
		Name: name, Version: version, Replicas: replicas, CPUs: 1, MemoryMiB: 128,
		Image: sources.Image{
			Kernel:  &sources.Artifact{URL: "file:///k", SHA256: strings.Repeat("a", 64)},
			Initrd:  &sources.Artifact{URL: "file:///i", SHA256: strings.Repeat("b", 64)},
			Cmdline: "console=ttyS0 drover.version=" + version,
		},
		Network: sources.Network{Mode: "user"},
		Port:    8080,
		Check:   sources.Check{HTTP: "/healthz", Interval: time.Second, Timeout: time.Second},
		Update:  sources.Update{Strategy: "blue-green", HealthyDeadline: time.Minute, AutoRollback: true},
	}
}

// vmOf is a running VM of svc's spec, created at minute n.
func vmOf(svc sources.Service, n int) hypervisor.VM {
	hash := SpecHash(svc)
	return hypervisor.VM{
		Name:  fmt.Sprintf("%s-%s-%d", svc.Name, shortHash(hash), n),
		State: hypervisor.StateRunning,
		Meta: hypervisor.Metadata{Service: svc.Name, SpecHash: hash, Version: svc.Version,
			Created: time.Date(2026, 1, 1, 0, n, 0, 0, time.UTC)},
	}
}

func passing(vms ...hypervisor.VM) []discovery.Instance {
	var out []discovery.Instance
	for _, vm := range vms {
		out = append(out, discovery.Instance{ID: vm.Name, Service: vm.Meta.Service, Status: discovery.StatusPassing})
	}
	return out
}

func TestPlan(t *testing.T) {
	v1 := testService("web", "1", 2)
	v2 := testService("web", "2", 2)
	a, b, c := vmOf(v1, 1), vmOf(v1, 2), vmOf(v1, 3)
	stopped := vmOf(v1, 4)
	stopped.State = hypervisor.StateShutoff
	critical := passing(c)
	critical[0].Status = discovery.StatusCritical
	other := vmOf(testService("db", "9", 1), 5)

	tests := []struct {
		name   string
		fleet  []sources.Service
		obs    Observed
		failed map[string]failure
		now    time.Time
		// failingSince by VM name
		failingSince map[string]time.Time
		// want
		create       int
		retire       []string
		remove       []string
		register     []string
		orphans      []string
		predecessors int
		held         bool
		noop         bool
		pending      int
		retireFirst  []string
	}{
		{name: "empty host", fleet: []sources.Service{v1}, create: 2},
		{name: "matching fleet is a no-op", fleet: []sources.Service{v1},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, noop: true},
		{name: "new version replaces all, predecessors retired after", fleet: []sources.Service{v2},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, create: 2, retire: []string{b.Name, a.Name}, predecessors: 2},
		{name: "scale up creates only the difference", fleet: []sources.Service{testService("web", "1", 3)},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, create: 1},
		{name: "scale down retires the non-passing, then the newest", fleet: []sources.Service{testService("web", "1", 1)},
			obs:    Observed{VMs: []hypervisor.VM{a, b, c}, Instances: append(passing(a, b), critical...)},
			retire: []string{c.Name, b.Name}},
		{name: "replicas zero retires everything", fleet: []sources.Service{testService("web", "1", 0)},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, retire: []string{b.Name, a.Name}},
		{name: "removed service is pruned", fleet: []sources.Service{v1},
			obs:    Observed{VMs: []hypervisor.VM{a, b, other}, Instances: passing(a, b, other)},
			retire: []string{other.Name}},
		{name: "stopped VM is removed and replaced", fleet: []sources.Service{v1},
			obs:    Observed{VMs: []hypervisor.VM{a, stopped}, Instances: passing(a, stopped)},
			create: 1, remove: []string{stopped.Name}},
		{name: "lost registration is registered, not replaced", fleet: []sources.Service{v1},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a)}, register: []string{b.Name}},
		{name: "registration without VM is an orphan", fleet: []sources.Service{v1},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b, c)}, orphans: []string{c.Name}},
		{name: "booting VM of an interrupted rollout is waited for", fleet: []sources.Service{v1},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: append(passing(a), discovery.Instance{ID: b.Name, Status: discovery.StatusCritical})},
			now: b.Meta.Created.Add(time.Second), pending: 1},
		{name: "long-critical VM is not a pending rollout", fleet: []sources.Service{v1},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: append(passing(a), discovery.Instance{ID: b.Name, Status: discovery.StatusCritical})},
			now: b.Meta.Created.Add(time.Hour), noop: true},
		{name: "VM failing its check too long is replaced", fleet: []sources.Service{v1},
			obs:          Observed{VMs: []hypervisor.VM{a, b}, Instances: append(passing(a), discovery.Instance{ID: b.Name, Status: discovery.StatusCritical})},
			now:          b.Meta.Created.Add(time.Hour),
			failingSince: map[string]time.Time{b.Name: b.Meta.Created.Add(50 * time.Minute)},
			create:       1, retire: []string{b.Name}, predecessors: 1},
		{name: "VM failing its check briefly is kept", fleet: []sources.Service{v1},
			obs:          Observed{VMs: []hypervisor.VM{a, b}, Instances: append(passing(a), discovery.Instance{ID: b.Name, Status: discovery.StatusCritical})},
			now:          b.Meta.Created.Add(time.Hour),
			failingSince: map[string]time.Time{b.Name: b.Meta.Created.Add(58 * time.Minute)},
			noop:         true},
		{name: "rolling with surge boots one first", fleet: []sources.Service{rolling(v2, 1, 0)},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, create: 1, predecessors: 2},
		{name: "rolling without surge retires one first", fleet: []sources.Service{rolling(v2, 0, 1)},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, retireFirst: []string{b.Name}, predecessors: 2},
		{name: "rolling retires a failing predecessor before a passing one", fleet: []sources.Service{rolling(v2, 0, 1)},
			obs:         Observed{VMs: []hypervisor.VM{a, b}, Instances: append(passing(b), discovery.Instance{ID: a.Name, Status: discovery.StatusCritical})},
			retireFirst: []string{a.Name}, predecessors: 2},
		{name: "canary boots the canary alone", fleet: []sources.Service{canary(v2, 1)},
			obs: Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)}, create: 1, predecessors: 2},
		{name: "failed revision is held", fleet: []sources.Service{v2},
			obs:    Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)},
			failed: map[string]failure{"web": {Revision: "rev1", SpecHash: SpecHash(v2), Reason: "unhealthy"}},
			held:   true, noop: true, predecessors: 2},
		{name: "failure of another commit is retried", fleet: []sources.Service{v2},
			obs:    Observed{VMs: []hypervisor.VM{a, b}, Instances: passing(a, b)},
			failed: map[string]failure{"web": {Revision: "rev0", SpecHash: SpecHash(v2), Reason: "unhealthy"}},
			create: 2, retire: []string{b.Name, a.Name}, predecessors: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plan(planInput{Revision: "rev1", Fleet: &sources.Fleet{Services: tt.fleet}, Obs: tt.obs, Failed: tt.failed, Now: tt.now,
				FailingSince: tt.failingSince, ReplaceUnhealthyAfter: 5 * time.Minute})
			var create int
			var retire, retireFirst, remove, register []string
			var held bool
			var predecessors, pending int
			for _, sp := range p.Services {
				pending += len(sp.Pending)
				create += sp.Create
				retire = append(retire, names(sp.Retire)...)
				retireFirst = append(retireFirst, names(sp.RetireFirst)...)
				remove = append(remove, names(sp.Remove)...)
				register = append(register, names(sp.Register)...)
				held = held || sp.Held != ""
				predecessors += len(sp.Predecessors)
			}
			check := func(what string, got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: got %v, want %v\nplan:\n%s", what, got, want, p)
				}
			}
			orNone := func(s []string) []string {
				if s == nil {
					return []string{}
				}
				return s
			}
			check("create", create, tt.create)
			check("retire", orNone(retire), orNone(tt.retire))
			check("retire first", orNone(retireFirst), orNone(tt.retireFirst))
			check("remove", orNone(remove), orNone(tt.remove))
			check("register", orNone(register), orNone(tt.register))
			check("orphans", orNone(p.Orphans), orNone(tt.orphans))
			check("held", held, tt.held)
			check("predecessors", predecessors, tt.predecessors)
			check("noop", p.Noop(), tt.noop)
			check("pending", pending, tt.pending)
		})
	}
}

func TestSpecHash(t *testing.T) {
	base := testService("web", "1", 2)
	same := []func(*sources.Service){
		func(s *sources.Service) { s.Replicas = 7 },
		func(s *sources.Service) { s.Update.Drain = time.Hour },
		func(s *sources.Service) {
			s.Image.Kernel = &sources.Artifact{URL: "https://mirror/k", SHA256: s.Image.Kernel.SHA256}
		},
	}
	different := []func(*sources.Service){
		func(s *sources.Service) { s.Version = "2" },
		func(s *sources.Service) { s.CPUs = 2 },
		func(s *sources.Service) { s.MemoryMiB = 256 },
		func(s *sources.Service) { s.Image.Cmdline += " quiet" },
		func(s *sources.Service) {
			s.Image.Initrd = &sources.Artifact{URL: "file:///i", SHA256: strings.Repeat("c", 64)}
		},
		func(s *sources.Service) {
			s.Image.Disk = &sources.Artifact{URL: "file:///d", SHA256: strings.Repeat("d", 64)}
		},
		func(s *sources.Service) { s.Port = 9090 },
		func(s *sources.Service) { s.Network = sources.Network{Mode: "bridge", Bridge: "br0"} },
		func(s *sources.Service) { s.Check.HTTP = "/ready" },
	}
	h := SpecHash(base)
	for i, mutate := range same {
		s := base
		mutate(&s)
		if got := SpecHash(s); got != h {
			t.Errorf("same[%d]: hash changed: %s -> %s", i, h, got)
		}
	}
	seen := []string{h}
	for i, mutate := range different {
		s := base
		mutate(&s)
		got := SpecHash(s)
		if slices.Contains(seen, got) {
			t.Errorf("different[%d]: hash %s not distinct", i, got)
		}
		seen = append(seen, got)
	}
}

func rolling(s sources.Service, surge, unavailable int) sources.Service {
	s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = sources.StrategyRolling, surge, unavailable
	return s
}

func canary(s sources.Service, n int) sources.Service {
	s.Update.Strategy, s.Update.Canary = sources.StrategyCanary, n
	return s
}

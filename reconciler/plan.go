package reconciler

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// Observed is the actual state a pass reads: managed VMs and Drover's Consul instances.
type Observed struct {
	VMs       []hypervisor.VM
	Instances []discovery.Instance
}

// Plan is what a pass will do, per service. Computing it changes nothing.
type Plan struct {
	Revision string
	Services []ServicePlan
	// Orphans are Drover-tagged Consul registrations whose VM no longer exists.
	Orphans []string

	// fleet is what the plan was computed against: the commit's, with held services
	// set back to the spec being restored.
	fleet *sources.Fleet
}

// ServicePlan is the diff of one service between the commit and what runs.
type ServicePlan struct {
	Service  string
	Version  string // desired version label ("" when pruned)
	SpecHash string // desired spec hash ("" when pruned)
	Replicas int
	Prune    bool // the service is gone from the fleet: everything is retired

	// Current are running VMs with the desired spec, Predecessors running VMs with another.
	Current      []hypervisor.VM
	Predecessors []hypervisor.VM
	// Replace holds, for VMs of the desired spec that are replaced anyway (drift, failing
	// their check too long), the reason; they are among Predecessors.
	Replace map[string]string
	// Pending are current VMs still inside their healthy_deadline that Consul does not
	// (yet) see passing: the health gate of a rollout that was interrupted, say by a
	// restart. The pass waits for them before it counts the service as done.
	Pending []hypervisor.VM
	// Create is how many new VMs to boot.
	Create int
	// RetireFirst are predecessors the strategy lets go at once (rolling, within
	// max_unavailable), before this step's VMs are created.
	RetireFirst []hypervisor.VM
	// Retire are running VMs to drain and destroy after the step's health gate: the
	// predecessors of blue-green and canary, and extras beyond replicas.
	Retire []hypervisor.VM
	// Remove are VMs that are not running (stopped, crashed): nothing to drain.
	Remove []hypervisor.VM
	// Register are running VMs whose Consul registration is missing: they are
	// registered again rather than replaced.
	Register []hypervisor.VM
	// Held says why a rollout is not attempted (its revision already failed).
	Held string
	// Suspended, when set, says an operator suspended the service: the plan leaves it
	// exactly as it is.
	Suspended *Suspended
	// InProgress: a rollout of this service is running in the background; this plan is
	// not acted on (the next pass plans again from what then exists).
	InProgress bool
	// IOError are VMs the hypervisor paused on an I/O error (a full disk, say): kept
	// for a person to look at, not counted as serving, never destroyed and re-made in
	// a loop.
	IOError []hypervisor.VM
}

// inProgress marks the services with a rollout running in the background.
func (p Plan) inProgress(busy map[string]bool) {
	for i := range p.Services {
		p.Services[i].InProgress = busy[p.Services[i].Service]
	}
}

// Noop reports whether the service needs no action.
func (p ServicePlan) Noop() bool {
	return p.Create == 0 && len(p.Pending) == 0 && len(p.RetireFirst) == 0 && len(p.Retire) == 0 && len(p.Remove) == 0 && len(p.Register) == 0
}

// Noop reports whether the whole plan needs no action.
func (p Plan) Noop() bool {
	for _, s := range p.Services {
		if !s.Noop() {
			return false
		}
	}
	return len(p.Orphans) == 0
}

// planInput is everything a plan is computed from.
type planInput struct {
	Revision string
	Fleet    *sources.Fleet
	Obs      Observed
	Failed   map[string]failure // by service
	Now      time.Time
	// FailingSince says since when each instance has been seen not passing, and
	// ReplaceUnhealthyAfter how long a VM may fail its check before it is replaced.
	FailingSince          map[string]time.Time
	ReplaceUnhealthyAfter time.Duration
	// Restoring holds, per service whose revision failed, why it is being brought back
	// to an earlier spec (the fleet passed in already carries that spec).
	Restoring map[string]string
	// Passed are the instances this Drover has seen passing: a VM that passed once is
	// not waited for as a rollout in progress when it fails later.
	Passed map[string]bool
	// Suspended are the services an operator suspended, left as they are.
	Suspended map[string]Suspended
}

// plan diffs desired against observed. It is pure: the same inputs give the same plan.
func plan(in planInput) Plan {
	obs := in.Obs
	p := Plan{Revision: in.Revision, fleet: in.Fleet}
	byService := map[string][]hypervisor.VM{}
	vmNames := map[string]bool{}
	for _, vm := range obs.VMs {
		byService[vm.Meta.Service] = append(byService[vm.Meta.Service], vm)
		vmNames[vm.Name] = true
	}
	instances := map[string]discovery.Instance{}
	suspended := in.Suspended
	for _, in := range obs.Instances {
		instances[in.ID] = in
		// A suspended service's registrations are left as they are too.
		if _, off := suspended[in.Service]; !vmNames[in.ID] && !off {
			p.Orphans = append(p.Orphans, in.ID)
		}
	}
	sort.Strings(p.Orphans)

	for _, svc := range in.Fleet.Services {
		p.Services = append(p.Services, planService(in, svc, byService[svc.Name], instances))
		delete(byService, svc.Name)
	}
	// What is left belongs to services gone from the fleet.
	gone := make([]string, 0, len(byService))
	for name := range byService {
		gone = append(gone, name)
	}
	sort.Strings(gone)
	for _, name := range gone {
		sp := ServicePlan{Service: name, Prune: true}
		if s, ok := in.Suspended[name]; ok {
			sp.Suspended = &s
			p.Services = append(p.Services, sp)
			continue
		}
		for _, vm := range byService[name] {
			// A paused one too: its service is gone, so nobody will look at it.
			if alive(vm) || vm.State == hypervisor.StatePausedIOError {
				sp.Retire = append(sp.Retire, vm)
			} else {
				sp.Remove = append(sp.Remove, vm)
			}
		}
		p.Services = append(p.Services, sp)
	}
	return p
}

func planService(inp planInput, svc sources.Service, vms []hypervisor.VM, instances map[string]discovery.Instance) ServicePlan {
	revision, now, failed := inp.Revision, inp.Now, inp.Failed[svc.Name]
	hash := SpecHash(svc)
	sp := ServicePlan{Service: svc.Name, Version: svc.Version, SpecHash: hash, Replicas: svc.Replicas, Replace: map[string]string{}}
	for _, vm := range sortedVMs(vms) {
		switch {
		case vm.State == hypervisor.StatePausedIOError:
			sp.IOError = append(sp.IOError, vm)
		case !alive(vm):
			sp.Remove = append(sp.Remove, vm)
		case vm.Meta.SpecHash != hash:
			sp.Predecessors = append(sp.Predecessors, vm)
		default:
			if why := replaceReason(inp, svc, vm); why != "" {
				// Drift is an anomaly: the VM is replaced like a predecessor, under the
				// service's strategy and health gate.
				sp.Replace[vm.Name] = why
				sp.Predecessors = append(sp.Predecessors, vm)
				continue
			}
			sp.Current = append(sp.Current, vm)
		}
	}
	if s, ok := inp.Suspended[svc.Name]; ok {
		// Left exactly as it is: not even a stopped VM is removed.
		sp.Suspended = &s
		sp.Remove = nil
		return sp
	}
	for _, vm := range append(slices.Clone(sp.Current), sp.Predecessors...) {
		if _, ok := instances[vm.Name]; !ok {
			sp.Register = append(sp.Register, vm)
		}
	}

	if why, ok := inp.Restoring[svc.Name]; ok {
		sp.Held = why
	} else if failed.Revision == revision && failed.SpecHash == hash {
		sp.Held = fmt.Sprintf("revision %s failed for this spec: %s (waiting for a new commit)", shortRev(revision), failed.Reason)
		return sp
	}

	var extras []hypervisor.VM
	if extra := len(sp.Current) - svc.Replicas; extra > 0 {
		extras = retireOrder(sp.Current, instances)[:extra]
		sp.Retire = append(sp.Retire, extras...)
	}
	isPassing := func(vm hypervisor.VM) bool {
		in, ok := instances[vm.Name]
		return ok && in.Status == discovery.StatusPassing
	}
	in := inputFor(svc)
	for _, vm := range sp.Current {
		if !slices.ContainsFunc(extras, func(e hypervisor.VM) bool { return e.Name == vm.Name }) {
			in.Current++
			if isPassing(vm) {
				in.CurrentPassing++
			}
		}
	}
	for _, vm := range sp.Predecessors {
		in.Old++
		if isPassing(vm) {
			in.OldPassing++
		}
	}
	st := strategyStep(svc.Update.Strategy, in)
	sp.Create = st.Create
	// The strategy counted on the failing predecessors going first.
	old := retireOrder(sp.Predecessors, instances)
	if st.RetireAfterGate {
		sp.Retire = append(sp.Retire, old[:st.RetireOld]...)
	} else {
		sp.RetireFirst = old[:st.RetireOld]
	}
	for _, vm := range sp.Current {
		in, registered := instances[vm.Name]
		if registered && in.Status != discovery.StatusPassing && !inp.Passed[vm.Name] && now.Before(vm.Meta.Created.Add(svc.Update.HealthyDeadline)) &&
			!slices.ContainsFunc(sp.Retire, func(r hypervisor.VM) bool { return r.Name == vm.Name }) {
			sp.Pending = append(sp.Pending, vm)
		}
	}
	return sp
}

// replaceReason says why a running VM of the desired spec must be replaced anyway, or "".
func replaceReason(in planInput, svc sources.Service, vm hypervisor.VM) string {
	if len(vm.Drift) > 0 {
		return "definition differs from what was created: " + strings.Join(vm.Drift, "; ")
	}
	if why := addressDrift(svc, vm); why != "" {
		return why
	}
	if since, ok := in.FailingSince[vm.Name]; ok && in.ReplaceUnhealthyAfter > 0 &&
		in.Now.Sub(since) >= in.ReplaceUnhealthyAfter &&
		(in.Passed[vm.Name] || in.Now.After(vm.Meta.Created.Add(svc.Update.HealthyDeadline))) {
		return fmt.Sprintf("failing its check since %s (longer than %s)", since.UTC().Format(time.RFC3339), in.ReplaceUnhealthyAfter)
	}
	return ""
}

// alive is whether a VM is (or is becoming) able to serve; anything else is removed.
func alive(vm hypervisor.VM) bool {
	return vm.State == hypervisor.StateRunning || vm.State == hypervisor.StateStarting
}

// retireOrder ranks VMs for scale-down: those not passing first, then the newest, so the
// instances with the longest healthy record keep serving.
func retireOrder(vms []hypervisor.VM, instances map[string]discovery.Instance) []hypervisor.VM {
	out := slices.Clone(vms)
	passing := func(vm hypervisor.VM) bool {
		in, ok := instances[vm.Name]
		return ok && in.Status == discovery.StatusPassing
	}
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := passing(out[i]), passing(out[j])
		if pi != pj {
			return !pi
		}
		if !out[i].Meta.Created.Equal(out[j].Meta.Created) {
			return out[i].Meta.Created.After(out[j].Meta.Created)
		}
		return out[i].Name > out[j].Name
	})
	return out
}

func sortedVMs(vms []hypervisor.VM) []hypervisor.VM {
	out := slices.Clone(vms)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// String renders the plan for `drover plan` and logs.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %s\n", shortRev(p.Revision))
	for _, s := range p.Services {
		switch {
		case s.Prune:
			fmt.Fprintf(&b, "service %s: removed from the fleet\n", s.Service)
		default:
			fmt.Fprintf(&b, "service %s: version %s, spec %s, replicas %d (current %d, predecessors %d)\n",
				s.Service, s.Version, shortHash(s.SpecHash), s.Replicas, len(s.Current), len(s.Predecessors))
		}
		if s.Held != "" {
			fmt.Fprintf(&b, "  held: %s\n", s.Held)
		}
		if s.Suspended != nil {
			fmt.Fprintf(&b, "  suspended since %s: left as it is until resumed\n", s.Suspended.At.Format(time.RFC3339))
		}
		for _, vm := range s.IOError {
			fmt.Fprintf(&b, "  %s is paused by an I/O error (disk full?): kept, not serving; destroy it by hand once looked at\n", vm.Name)
		}
		if s.InProgress {
			b.WriteString("  rollout in progress\n")
			continue
		}
		if s.Noop() {
			b.WriteString("  up to date\n")
			continue
		}
		for _, vm := range s.Remove {
			fmt.Fprintf(&b, "  remove %s (%s)\n", vm.Name, vm.State)
		}
		for _, vm := range s.Register {
			fmt.Fprintf(&b, "  register %s again in Consul\n", vm.Name)
		}
		for _, vm := range s.RetireFirst {
			fmt.Fprintf(&b, "  drain and destroy %s (version %s) first\n", vm.Name, vm.Meta.Version)
		}
		for _, vm := range s.Pending {
			fmt.Fprintf(&b, "  wait for %s to pass its check\n", vm.Name)
		}
		if s.Create > 0 {
			fmt.Fprintf(&b, "  create %d VM(s) %s-%s-*\n", s.Create, s.Service, shortHash(s.SpecHash))
		}
		for _, vm := range s.Retire {
			why := ""
			if r, ok := s.Replace[vm.Name]; ok {
				why = ": " + r
			}
			fmt.Fprintf(&b, "  drain and destroy %s (version %s)%s\n", vm.Name, vm.Meta.Version, why)
		}
	}
	for _, id := range p.Orphans {
		fmt.Fprintf(&b, "deregister %s (no such VM)\n", id)
	}
	return b.String()
}

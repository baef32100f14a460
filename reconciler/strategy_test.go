package reconciler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/drover-dev/drover/sources"
)

// stepIn builds a stepInput from the axes every table below varies, in one fixed order:
// replicas, surge, unavailable, current, current passing, old, old passing.
func stepIn(replicas, surge, unavailable, cur, curPassing, old, oldPassing int) stepInput {
	return stepInput{Replicas: replicas, MaxSurge: surge, MaxUnavailable: unavailable,
		Current: cur, CurrentPassing: curPassing, Old: old, OldPassing: oldPassing}
}

func TestRollingStep(t *testing.T) {
	tests := []struct {
		name string
		in   stepInput
		want step
	}{
		{"surge 1: first new VM", stepIn(3, 1, 0, 0, 0, 3, 3), step{Create: 1}},
		{"surge 1: new VM booting, nothing more fits", stepIn(3, 1, 0, 1, 0, 3, 3), step{}},
		{"surge 1: new VM passing, one old may go", stepIn(3, 1, 0, 1, 1, 3, 3), step{RetireOld: 1}},
		{"surge 1: room again after a retirement", stepIn(3, 1, 0, 1, 1, 2, 2), step{Create: 1}},
		{"unavailable 1, no surge: retire before creating", stepIn(3, 0, 1, 0, 0, 3, 3), step{RetireOld: 1}},
		{"unavailable 1, no surge: create into the freed room", stepIn(3, 0, 1, 0, 0, 2, 2), step{Create: 1}},
		{"unavailable 1, no surge: new booting holds the old", stepIn(3, 0, 1, 1, 0, 2, 2), step{}},
		{"surge 2 unavailable 1: both at once", stepIn(3, 2, 1, 0, 0, 3, 3), step{Create: 2, RetireOld: 1}},
		{"failing old go first and free, passing ones only above the floor", stepIn(3, 1, 0, 0, 0, 3, 1), step{Create: 1, RetireOld: 2}},
		{"failing old go even below the floor", stepIn(3, 0, 0, 0, 0, 3, 0), step{RetireOld: 3}},
		{"all new passing: every old goes", stepIn(3, 1, 0, 3, 3, 3, 3), step{RetireOld: 3}},
		{"last new VM booting: the old one stays", stepIn(3, 1, 0, 3, 2, 1, 1), step{}},
		{"extras beyond replicas create nothing", stepIn(3, 1, 0, 4, 4, 0, 0), step{}},
		{"scale to zero retires every old", stepIn(0, 1, 0, 0, 0, 2, 2), step{RetireOld: 2}},
		{"max_unavailable = replicas allows losing all", stepIn(3, 0, 3, 0, 0, 3, 3), step{RetireOld: 3}},
		{"no predecessors: create up to replicas", stepIn(3, 1, 0, 0, 0, 0, 0), step{Create: 3}},
		{"scale up within surge", stepIn(5, 1, 0, 3, 3, 0, 0), step{Create: 2}},
		{"large surge behaves as blue-green", stepIn(3, 10, 0, 0, 0, 3, 3), step{Create: 3}},
		{"more old than the bound allows: create nothing", stepIn(3, 1, 0, 0, 0, 5, 5), step{RetireOld: 2}},
		{"passing counts above VM counts are clamped", stepIn(3, 1, 0, 3, 7, 1, 5), step{RetireOld: 1}},
		{"negative passing counts are clamped", stepIn(3, 1, 0, 1, -1, 3, -2), step{RetireOld: 3}},
		// The parser rejects this combination: no step can ever add or remove a VM.
		{"surge and unavailable 0 stall", stepIn(3, 0, 0, 0, 0, 3, 3), step{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rollingStep(tt.in); got != tt.want {
				t.Errorf("rollingStep(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestBlueGreenStep(t *testing.T) {
	tests := []struct {
		name string
		in   stepInput
		want step
	}{
		{"replace all", stepIn(3, 0, 0, 0, 0, 3, 3), step{Create: 3, RetireOld: 3}},
		{"resume after some were created", stepIn(3, 0, 0, 2, 1, 3, 3), step{Create: 1, RetireOld: 3}},
		{"all created, not passing yet", stepIn(3, 0, 0, 3, 0, 3, 3), step{RetireOld: 3}},
		{"done", stepIn(3, 0, 0, 3, 3, 0, 0), step{}},
		{"extras create nothing", stepIn(3, 0, 0, 5, 5, 0, 0), step{}},
		{"scale to zero", stepIn(0, 0, 0, 0, 0, 2, 1), step{RetireOld: 2}},
		{"first deploy", stepIn(2, 0, 0, 0, 0, 0, 0), step{Create: 2}},
		// Surge and unavailable are rolling's: blue-green ignores them.
		{"rolling bounds ignored", stepIn(3, 0, 1, 0, 0, 3, 3), step{Create: 3, RetireOld: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.RetireAfterGate = true
			if got := blueGreenStep(tt.in); got != tt.want {
				t.Errorf("blueGreenStep(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCanaryStep(t *testing.T) {
	canary := func(n int, s stepInput) stepInput { s.Canary = n; return s }
	tests := []struct {
		name string
		in   stepInput
		want step
	}{
		{"first the canary", canary(1, stepIn(4, 0, 0, 0, 0, 4, 4)), step{Create: 1}},
		{"canary booting: wait", canary(1, stepIn(4, 0, 0, 1, 0, 4, 4)), step{}},
		{"canary passing: the rest, old after the gate", canary(1, stepIn(4, 0, 0, 1, 1, 4, 4)), step{Create: 3, RetireOld: 4}},
		{"two canaries: the second one", canary(2, stepIn(4, 0, 0, 1, 1, 4, 4)), step{Create: 1}},
		{"two canaries, one failing: wait", canary(2, stepIn(4, 0, 0, 2, 1, 4, 4)), step{}},
		{"restart while the rest boot: wait for them", canary(1, stepIn(4, 0, 0, 2, 1, 4, 4)), step{}},
		{"all created: retire old after the gate", canary(1, stepIn(4, 0, 0, 4, 2, 4, 4)), step{RetireOld: 4}},
		{"done", canary(1, stepIn(4, 0, 0, 4, 4, 0, 0)), step{}},
		{"canary unset counts as 1", canary(0, stepIn(4, 0, 0, 0, 0, 4, 4)), step{Create: 1}},
		{"canary above replicas is replicas", canary(9, stepIn(4, 0, 0, 0, 0, 4, 4)), step{Create: 4}},
		{"canary equal to replicas: then only retire", canary(4, stepIn(4, 0, 0, 4, 4, 4, 4)), step{RetireOld: 4}},
		{"scale to zero", canary(2, stepIn(0, 0, 0, 0, 0, 2, 2)), step{RetireOld: 2}},
		{"no predecessors: still one canary first", canary(1, stepIn(3, 0, 0, 0, 0, 0, 0)), step{Create: 1}},
		{"extras beyond replicas", canary(1, stepIn(2, 0, 0, 3, 3, 1, 1)), step{RetireOld: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.RetireAfterGate = true
			if got := canaryStep(tt.in); got != tt.want {
				t.Errorf("canaryStep(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestStrategyStep(t *testing.T) {
	svc := testService("web", "1", 3)
	svc.Update = sources.Update{Strategy: sources.StrategyRolling, MaxSurge: 2, MaxUnavailable: 1}
	base := inputFor(svc)
	if want := (stepInput{Replicas: 3, MaxSurge: 2, MaxUnavailable: 1}); base != want {
		t.Fatalf("inputFor:\n got %+v\nwant %+v", base, want)
	}
	base.Old, base.OldPassing, base.Canary = 3, 3, 1
	tests := []struct {
		strategy string
		want     step
	}{
		{sources.StrategyRolling, step{Create: 2, RetireOld: 1}},
		{sources.StrategyCanary, step{Create: 1, RetireAfterGate: true}},
		{sources.StrategyBlueGreen, step{Create: 3, RetireOld: 3, RetireAfterGate: true}},
		{"", step{Create: 3, RetireOld: 3, RetireAfterGate: true}},
	}
	for _, tt := range tests {
		if got := strategyStep(tt.strategy, base); got != tt.want {
			t.Errorf("strategyStep(%q, %+v)\n got %+v\nwant %+v", tt.strategy, base, got, tt.want)
		}
	}
}

// simVM is one VM of a simulated rollout.
type simVM struct {
	current, passing bool
}

// rolloutSim drives a strategy step by step over simulated VMs and checks the bounds at
// every instant a real executor could expose.
type rolloutSim struct {
	t                            *testing.T
	replicas, surge, unavailable int
	vms                          []simVM
	// health makes some booting current VMs pass; it reports whether any changed.
	health func(vms []simVM) bool
}

func (s *rolloutSim) counts() stepInput {
	in := stepInput{Replicas: s.replicas, MaxSurge: s.surge, MaxUnavailable: s.unavailable}
	for _, vm := range s.vms {
		switch {
		case vm.current:
			in.Current++
			if vm.passing {
				in.CurrentPassing++
			}
		default:
			in.Old++
			if vm.passing {
				in.OldPassing++
			}
		}
	}
	return in
}

// retire removes n predecessors, failing ones first, as retireOrder makes every
// executor do.
func (s *rolloutSim) retire(n int) {
	for _, wantPassing := range []bool{false, true} {
		kept := s.vms[:0]
		for _, vm := range s.vms {
			if n > 0 && !vm.current && vm.passing == wantPassing {
				n--
				continue
			}
			kept = append(kept, vm)
		}
		s.vms = kept
	}
	if n > 0 {
		s.t.Fatalf("asked to retire %d predecessors more than exist", n)
	}
}

func (s *rolloutSim) passing() int {
	n := 0
	for _, vm := range s.vms {
		if vm.passing {
			n++
		}
	}
	return n
}

// run takes rolling steps until the rollout is done and returns how many it took. The
// created VMs are not passing while the retirements of the same step happen, which is
// the worst order a concurrent executor can produce.
func (s *rolloutSim) run() int {
	floor := s.replicas - s.unavailable
	limit := s.replicas + s.surge
	for steps := 0; steps < 10*(s.replicas+s.surge+len(s.vms)+2); steps++ {
		in := s.counts()
		if in.Current == s.replicas && in.CurrentPassing == s.replicas && in.Old == 0 {
			return steps
		}
		st := rollingStep(in)
		if total := in.Current + in.Old + st.Create; total > limit {
			s.t.Fatalf("step %d from %+v: %+v makes %d VMs, more than replicas+max_surge %d", steps, in, st, total, limit)
		}
		before := s.passing()
		for range st.Create {
			s.vms = append(s.vms, simVM{current: true})
		}
		s.retire(st.RetireOld)
		// Starting below the floor (predecessors already failing), a step must not make
		// it worse; otherwise it must not cross the floor.
		if after := s.passing(); after < min(floor, before) {
			s.t.Fatalf("step %d from %+v: %+v leaves %d passing, below replicas-max_unavailable %d", steps, in, st, after, floor)
		}
		changed := s.health(s.vms)
		if st.Create == 0 && st.RetireOld == 0 && !changed {
			s.t.Fatalf("step %d from %+v: stalled, nothing to create, retire or wait for", steps, in)
		}
	}
	s.t.Fatalf("rollout did not finish: %+v", s.counts())
	return 0
}

// healthModes make booting VMs pass at different speeds; all of them eventually pass.
func healthModes(seed uint64) map[string]func([]simVM) bool {
	rnd := rand.New(rand.NewPCG(seed, 1))
	return map[string]func([]simVM) bool{
		"all at once": func(vms []simVM) bool {
			changed := false
			for i := range vms {
				if vms[i].current && !vms[i].passing {
					vms[i].passing, changed = true, true
				}
			}
			return changed
		},
		"one per step": func(vms []simVM) bool {
			for i := range vms {
				if vms[i].current && !vms[i].passing {
					vms[i].passing = true
					return true
				}
			}
			return false
		},
		"random": func(vms []simVM) bool {
			changed := false
			for i := range vms {
				if vms[i].current && !vms[i].passing && rnd.IntN(3) == 0 {
					vms[i].passing, changed = true, true
				}
			}
			// Time passes even when no VM is ready yet: report a change so the stall
			// check only fires when nothing could ever change.
			for i := range vms {
				if vms[i].current && !vms[i].passing {
					return true
				}
			}
			return changed
		},
	}
}

// TestRollingRolloutCompletes proves progress: from every starting point within the
// bounds (a fresh rollout, one resumed with some new VMs, predecessors already failing),
// for every replicas, max_surge and max_unavailable the parser admits, the rollout ends
// with replicas new VMs passing and no predecessor, never exceeding replicas+max_surge
// VMs nor dropping below replicas-max_unavailable passing.
func TestRollingRolloutCompletes(t *testing.T) {
	runs, maxSteps := 0, 0
	for replicas := 0; replicas <= 6; replicas++ {
		for surge := 0; surge <= 3; surge++ {
			for unavailable := 0; unavailable <= replicas; unavailable++ {
				if surge == 0 && unavailable == 0 {
					continue
				}
				for cur := 0; cur <= replicas; cur++ {
					for old := 0; old <= replicas; old++ {
						if cur+old > replicas+surge {
							continue
						}
						for failing := 0; failing <= old; failing++ {
							for mode, health := range healthModes(uint64(replicas*1000 + surge*100 + unavailable*10 + cur)) {
								name := fmt.Sprintf("replicas=%d surge=%d unavailable=%d start=%d new + %d old (%d failing), health %s",
									replicas, surge, unavailable, cur, old, failing, mode)
								t.Run(name, func(t *testing.T) {
									s := &rolloutSim{t: t, replicas: replicas, surge: surge, unavailable: unavailable, health: health}
									for range cur {
										s.vms = append(s.vms, simVM{current: true, passing: true})
									}
									for i := range old {
										s.vms = append(s.vms, simVM{passing: i >= failing})
									}
									maxSteps = max(maxSteps, s.run())
								})
								runs++
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d rollouts simulated, longest took %d steps", runs, maxSteps)
}

// The parser forbids max_surge and max_unavailable both 0 because of this: the first
// step of any replacement already has nothing it may do.
func TestRollingWithoutSurgeOrUnavailableStalls(t *testing.T) {
	for replicas := 1; replicas <= 5; replicas++ {
		in := stepIn(replicas, 0, 0, 0, 0, replicas, replicas)
		if got := rollingStep(in); got.Create != 0 || got.RetireOld != 0 {
			t.Errorf("rollingStep(%+v) = %+v, want a step that does nothing", in, got)
		}
	}
}

// TestCanaryRolloutOrder simulates canary rollouts: the canaries exist alone until they
// pass, the rest come only then, no predecessor goes before every current VM passes,
// and capacity never drops below replicas.
func TestCanaryRolloutOrder(t *testing.T) {
	for replicas := 1; replicas <= 6; replicas++ {
		for canary := 1; canary <= replicas; canary++ {
			t.Run(fmt.Sprintf("replicas=%d canary=%d", replicas, canary), func(t *testing.T) {
				cur, curPassing, old := 0, 0, replicas
				var created []int
				for steps := 0; ; steps++ {
					if steps > 10 {
						t.Fatalf("rollout did not finish: current %d (%d passing), old %d", cur, curPassing, old)
					}
					if cur == replicas && curPassing == replicas && old == 0 {
						break
					}
					in := stepInput{Replicas: replicas, Canary: canary, Current: cur, CurrentPassing: curPassing, Old: old, OldPassing: old}
					st := canaryStep(in)
					if st.Create > 0 {
						created = append(created, st.Create)
					}
					if st.Create > 0 && cur > 0 && curPassing < cur {
						t.Fatalf("step %d from %+v: %+v creates before the canaries pass", steps, in, st)
					}
					cur += st.Create
					// The gate: every current VM passes before any predecessor goes.
					curPassing = cur
					if st.RetireOld > 0 && !st.RetireAfterGate {
						t.Fatalf("step %d from %+v: %+v retires without the gate", steps, in, st)
					}
					if curPassing+old-st.RetireOld < replicas {
						t.Fatalf("step %d from %+v: %+v leaves fewer than %d passing", steps, in, st, replicas)
					}
					old -= st.RetireOld
				}
				want := []int{canary}
				if replicas > canary {
					want = append(want, replicas-canary)
				}
				if fmt.Sprint(created) != fmt.Sprint(want) {
					t.Errorf("VMs created per step: got %v, want %v", created, want)
				}
			})
		}
	}
}

package reconciler

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/drover-dev/drover/sources"
)

// Budget is what one fleet may ask of this host at the peak of its rollouts. A commit
// over it is refused before any VM is created, and the last admitted revision keeps
// being reconciled, as for a commit that does not parse: a commit with `replicas:
// 100000` must not be able to take the host down.
type Budget struct {
	// MaxVMs bounds the VMs that exist at once (QEMU processes, disk overlays, console
	// logs, Consul registrations).
	MaxVMs int
	// MaxMemoryMiB bounds the guest memory of those VMs: past the host's RAM the kernel
	// OOM-kills QEMUs (or Drover, or Consul).
	MaxMemoryMiB int
	// MaxCPUs bounds their vCPUs: overcommit is fine for mostly idle guests, but far
	// beyond the host's CPUs health checks time out and rollouts fail for no fault of
	// the revision.
	MaxCPUs int
}

// Defaults of DefaultBudget beyond what the host's size gives.
const (
	defaultMaxVMs       = 100
	cpuOvercommit       = 4
	minMemoryReserveMiB = 1024 // for the host, Drover, Consul and QEMU's own overhead
	fallbackMemoryMiB   = 8192 // when the host's RAM cannot be read
)

// DefaultBudget is a budget from this host's size: 100 VMs; RAM minus a reserve (a
// tenth, at least 1 GiB) for the host itself; 4 vCPUs per CPU.
func DefaultBudget() Budget {
	mem := fallbackMemoryMiB
	if total, err := hostMemoryMiB(); err == nil {
		mem = max(total-max(total/10, minMemoryReserveMiB), 256)
	}
	return Budget{MaxVMs: defaultMaxVMs, MaxMemoryMiB: mem, MaxCPUs: cpuOvercommit * runtime.NumCPU()}
}

// orDefault fills each zero field from d.
func (b Budget) orDefault(d Budget) Budget {
	if b.MaxVMs <= 0 {
		b.MaxVMs = d.MaxVMs
	}
	if b.MaxMemoryMiB <= 0 {
		b.MaxMemoryMiB = d.MaxMemoryMiB
	}
	if b.MaxCPUs <= 0 {
		b.MaxCPUs = d.MaxCPUs
	}
	return b
}

// hostMemoryMiB reads MemTotal from /proc/meminfo.
func hostMemoryMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.Atoi(fields[1])
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemTotal %q: %w", fields[1], err)
			}
			return kib / 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no MemTotal")
}

// Usage is what a fleet needs at the peak of its rollouts.
type Usage struct {
	VMs, MemoryMiB, CPUs int64
}

// peakVMs is how many VMs of svc exist at once at the peak of a rollout under its
// strategy: blue-green (and canary, which goes on as blue-green) boots the new set
// beside the old; rolling stays within replicas + max_surge.
func peakVMs(svc sources.Service) int64 {
	n := int64(svc.Replicas)
	if svc.Update.Strategy == sources.StrategyRolling {
		return n + int64(max(svc.Update.MaxSurge, 0))
	}
	return 2 * n
}

// peakUsage is what f needs at once when every service rolls out together, the worst
// a commit can cause.
func peakUsage(f *sources.Fleet) Usage {
	var u Usage
	for _, svc := range f.Services {
		n := peakVMs(svc)
		u.VMs += n
		u.MemoryMiB += n * int64(svc.MemoryMiB)
		u.CPUs += n * int64(svc.CPUs)
	}
	return u
}

// BudgetError is a commit that would need more of the host than its budget.
type BudgetError struct {
	Revision string
	Need     Usage
	Budget   Budget
	Over     []string // what is exceeded, with the totals and the limit
}

func (e *BudgetError) Error() string {
	return fmt.Sprintf("revision %s refused: at the peak of its rollouts the fleet needs %s; nothing is changed (raise the limit, or lower replicas/memory/cpus)",
		shortRev(e.Revision), strings.Join(e.Over, "; "))
}

// Admit checks rev against the host budget. It reads nothing but rev: a refused commit
// changes nothing, and the previous revision stays the one reconciled.
func (r *Reconciler) Admit(rev sources.Revision) error {
	return checkBudget(rev, r.cfg.Budget)
}

func checkBudget(rev sources.Revision, b Budget) error {
	if rev.Fleet == nil {
		return nil
	}
	need := peakUsage(rev.Fleet)
	var over []string
	if need.VMs > int64(b.MaxVMs) {
		over = append(over, fmt.Sprintf("%d VMs, more than --max-vms %d", need.VMs, b.MaxVMs))
	}
	if need.MemoryMiB > int64(b.MaxMemoryMiB) {
		over = append(over, fmt.Sprintf("%d MiB of guest memory, more than --max-memory %d MiB", need.MemoryMiB, b.MaxMemoryMiB))
	}
	if need.CPUs > int64(b.MaxCPUs) {
		over = append(over, fmt.Sprintf("%d vCPUs, more than --max-cpus %d", need.CPUs, b.MaxCPUs))
	}
	if len(over) == 0 {
		return nil
	}
	return &BudgetError{Revision: rev.Commit, Need: need, Budget: b, Over: over}
}

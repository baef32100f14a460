// Package sources is where desired state comes from: the fleet file format (types, strict
// parsing, validation), the git source that tracks a branch, and the cache that fetches
// and verifies golden images.
package sources

import (
	"fmt"
	"time"
)

// Fleet is the desired state at one commit: fleet file contract version 1.
type Fleet struct {
	Services []Service
}

// Service is one entry of `services:`. Defaults are applied by parsing, so every field
// here holds the effective value.
type Service struct {
	Name      string
	Version   string
	Replicas  int
	CPUs      int
	MemoryMiB int
	Image     Image
	Network   Network
	Port      int
	Check     Check
	Update    Update
	// CloudInit is the optional `cloud_init:` block; nil when the service has none.
	CloudInit *CloudInit
	// Chaos is the optional `chaos:` block; nil when the service has none.
	Chaos *Chaos
	// ShareConsulService is `share_consul_service` (default false): register into the
	// Consul service of this name even when it has instances that are not this fleet's
	// (another team's, or another fleet's). Without it such a name is refused, so a
	// commit cannot put its VMs into someone else's DNS answers.
	ShareConsulService bool

	// Pos is where the service is declared, for messages that point at the file.
	Pos Pos
}

// Pos is a place in a fleet file.
type Pos struct {
	File string
	Line int
	Col  int
}

// Artifact is a golden image file: where to get it and the digest its bytes must have.
type Artifact struct {
	URL    string // file://, http:// or https://
	SHA256 string // 64 lowercase hex
}

// Image is what a VM boots: a kernel (with optional initrd and cmdline) and/or a disk.
type Image struct {
	Kernel  *Artifact
	Initrd  *Artifact
	Cmdline string
	Disk    *Artifact
	// Firmware is `image.firmware` for a disk booted without a kernel: "bios" (the
	// default) or "uefi".
	Firmware string
	// DiskSizeBytes is `image.disk_size` (MiB/GiB units): the per-VM overlay's virtual
	// size; 0 keeps the golden disk's.
	DiskSizeBytes int64
}

// CloudInit is the optional `cloud_init:` block.
type CloudInit struct {
	// UserData is `cloud_init.user_data`: a path relative to the fleet file, read at
	// the same commit.
	UserData string
	// Content is that file's bytes; part of the spec, so a change replaces the VMs.
	Content []byte
	Pos     Pos
}

// Network is the `network:` block.
type Network struct {
	Mode    string // user | bridge | network
	Bridge  string
	Network string
	// Static addressing: Addresses is the pool (`198.18.0.10-198.18.0.99` or a CIDR);
	// empty means DHCP. Prefix is the guest's prefix length; Gateway and DNS optional.
	Addresses string
	Prefix    int
	Gateway   string
	DNS       []string
}

// Check is the Consul health check and the rollout's gate.
type Check struct {
	HTTP     string // path, e.g. /healthz; empty when TCP
	TCP      bool
	Interval time.Duration
	Timeout  time.Duration
}

// Update strategies, the values of `update.strategy`.
const (
	// StrategyBlueGreen boots every replacement at once and drains the predecessors only
	// when all of them pass: the fastest rollout, needing twice the capacity for a while.
	StrategyBlueGreen = "blue-green"
	// StrategyRolling replaces VMs a few at a time, bounded by max_surge and
	// max_unavailable, as Nomad's update block and EC2 instance refresh do.
	StrategyRolling = "rolling"
	// StrategyCanary boots `canary` new VMs first and, once they pass, the rest as
	// blue-green does.
	StrategyCanary = "canary"
)

// Update is the `update:` block: how a service moves from one spec to the next.
type Update struct {
	// Strategy is `update.strategy`: blue-green (the default), rolling or canary.
	Strategy string

	// MaxSurge is `update.max_surge`, rolling only (default 1): how many VMs beyond
	// `replicas` may exist during a rollout, so at most replicas + max_surge VMs run at
	// any instant. 0 when the strategy is not rolling.
	MaxSurge int
	// MaxUnavailable is `update.max_unavailable`, rolling only (default 0): how many of
	// `replicas` may be missing from the passing instances during a rollout, so never
	// fewer than replicas - max_unavailable pass. It may not exceed replicas, and it
	// cannot be 0 together with max_surge: such a rollout could neither add nor remove a
	// VM. 0 when the strategy is not rolling.
	MaxUnavailable int
	// Canary is `update.canary`, canary only (default 1): how many new VMs boot first and
	// must pass before the rest are created. It may not exceed replicas (unless replicas
	// is 0). 0 when the strategy is not canary.
	Canary int

	// MinHealthyTime is `update.min_healthy_time`: passing this long before a new VM
	// counts as healthy.
	MinHealthyTime time.Duration
	// HealthyDeadline is `update.healthy_deadline`: a new VM not healthy by then fails the
	// rollout (and rolls it back).
	HealthyDeadline time.Duration
	// Drain is `update.drain`: how long a retired VM stays in Consul maintenance, out of
	// the passing results, before it is shut down.
	Drain time.Duration
	// ShutdownTimeout is `update.shutdown_timeout`: the ACPI shutdown grace before a hard
	// destroy.
	ShutdownTimeout time.Duration
	// AutoRollback is `update.auto_rollback`: destroy the new VMs of a failed rollout and
	// keep the old ones serving.
	AutoRollback bool
}

// Chaos is the optional `chaos:` block of a service: burn-and-rebuild. Every Interval,
// inside the Window when one is set and only while every replica passes, Drover drains
// and destroys one random healthy instance and lets the reconciler replace it, proving
// the service survives losing any one of them.
//
//	chaos:
//	  interval: 10m           # required, > 0
//	  window: "02:00-04:00"   # optional, daily, UTC; may wrap midnight ("22:00-02:00")
type Chaos struct {
	// Interval is `chaos.interval`: the least time between two burns of this service.
	Interval time.Duration
	// Window is `chaos.window`; nil means any time of day.
	Window *Window
}

// Window is a daily time range in UTC, such as 02:00-04:00. The start is included and the
// end is not; a window whose end is before its start wraps midnight (22:00-02:00 is four
// hours). Start and end are never equal: such a window would be empty, or the whole day,
// and either is better said another way.
type Window struct {
	// Start and End are offsets from 00:00 UTC, below 24h, whole minutes.
	Start, End time.Duration
}

// Contains reports whether t falls inside the window, on any day. A nil window contains
// every instant.
func (w *Window) Contains(t time.Time) bool {
	if w == nil {
		return true
	}
	t = t.UTC()
	offset := t.Sub(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC))
	if w.Start < w.End {
		return offset >= w.Start && offset < w.End
	}
	return offset >= w.Start || offset < w.End
}

// String formats the window as it is written in a fleet file, HH:MM-HH:MM.
func (w *Window) String() string {
	if w == nil {
		return "any time"
	}
	hm := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return hm(w.Start) + "-" + hm(w.End)
}

// Service lookup by name.
func (f *Fleet) Service(name string) (Service, bool) {
	for _, s := range f.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

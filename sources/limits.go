package sources

import "time"

// Bounds on what a fleet repository can make Drover read. A commit may deploy VMs and
// nothing more: it must not be able to exhaust the memory or time of the host that
// parses it. Every reader of fleet files (git, a directory, `drover validate`) checks
// these before it reads a byte it does not need.
const (
	// MaxFleetFileBytes is the largest single fleet file.
	MaxFleetFileBytes = 1 << 20
	// MaxFleetTotalBytes is the largest sum of all fleet files of one revision.
	MaxFleetTotalBytes = 4 << 20
	// MaxFleetFiles is the most *.yaml files in a fleet directory.
	MaxFleetFiles = 256
)

// Bounds on the values of a fleet file. Each is far above what a real service needs and
// far below what would let one commit exhaust the host or stall a rollout for days; the
// host budgets (VMs, memory, CPUs in total) are enforced where the fleet is planned.
const (
	// MaxServices bounds the services of a fleet, all its files together.
	MaxServices = 1000
	// MaxReplicas bounds `replicas`, and also `max_surge`, `max_unavailable` and `canary`.
	MaxReplicas = 1000
	// MaxCPUs bounds `cpus`: QEMU's q35 and pc machines top out around here.
	MaxCPUs = 256
	// MinMemoryMiB and MaxMemoryMiB bound `memory`: below 16 MiB no Linux guest boots,
	// and 1 TiB is more than any one guest here should ask for.
	MinMemoryMiB = 16
	MaxMemoryMiB = 1 << 20

	// MaxVersionBytes bounds `version`, which is published in Consul service meta.
	MaxVersionBytes = 128
	// MaxCmdlineBytes bounds `image.cmdline`: Linux's COMMAND_LINE_SIZE on x86.
	MaxCmdlineBytes = 2048
	// MaxURLBytes bounds `url` of an image artifact.
	MaxURLBytes = 2048
	// MaxCheckPathBytes bounds `check.http`.
	MaxCheckPathBytes = 1024
	// MaxBridgeBytes bounds `network.bridge`: a Linux interface name (IFNAMSIZ - 1).
	MaxBridgeBytes = 15
	// MaxDiskSizeBytes bounds `image.disk_size`: 64 TiB, qcow2's practical ceiling and
	// far above any one guest's disk here.
	MaxDiskSizeBytes = 64 << 40
	// MaxUserDataPathBytes bounds `cloud_init.user_data`, a path in the repository.
	MaxUserDataPathBytes = 1024
	// MaxNetworkBytes bounds `network.network`, a libvirt network name.
	MaxNetworkBytes = 64

	// MaxCheckInterval bounds `check.interval` (and so `check.timeout`, which may not
	// exceed it): a slower check would keep a rollout's gate blind for longer.
	MaxCheckInterval = 10 * time.Minute
	// MaxHealthyDeadline bounds `update.healthy_deadline`, and so `min_healthy_time`,
	// which must be shorter: a rollout decides within a day.
	MaxHealthyDeadline = 24 * time.Hour
	// MaxDrain bounds `update.drain`: a retired VM keeps its memory until drained.
	MaxDrain = time.Hour
	// MaxShutdownTimeout bounds `update.shutdown_timeout`.
	MaxShutdownTimeout = time.Hour
	// MaxChaosInterval bounds `chaos.interval`: monthly is the rarest burn that still
	// proves anything.
	MaxChaosInterval = 30 * 24 * time.Hour
)

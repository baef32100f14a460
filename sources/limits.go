package sources

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

// Package sources is where desired state comes from: the fleet file format (types, strict
// parsing, validation), the git source that tracks a branch, and the cache that fetches
// and verifies golden images.
package sources

import "time"

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
}

// Network is the `network:` block.
type Network struct {
	Mode    string // user | bridge | network
	Bridge  string
	Network string
}

// Check is the Consul health check and the rollout's gate.
type Check struct {
	HTTP     string // path, e.g. /healthz; empty when TCP
	TCP      bool
	Interval time.Duration
	Timeout  time.Duration
}

// Update is the `update:` block.
type Update struct {
	Strategy        string // blue-green (only strategy in this version)
	MinHealthyTime  time.Duration
	HealthyDeadline time.Duration
	Drain           time.Duration
	ShutdownTimeout time.Duration
	AutoRollback    bool
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

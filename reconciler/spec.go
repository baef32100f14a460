package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/drover-dev/drover/sources"
)

// Tag marks every Consul instance Drover registers.
const Tag = "drover"

// SpecHash is the identity of a service's VM-relevant spec: everything that is fixed at a
// VM's birth. Two VMs with the same hash are interchangeable; any difference means
// replacement. Replicas and the update block are deliberately absent: scaling or tuning
// a rollout never replaces a VM. Images enter by digest, not URL, so moving an image to
// another mirror is not a change.
func SpecHash(s sources.Service) string {
	digest := func(a *sources.Artifact) string {
		if a == nil {
			return ""
		}
		return a.SHA256
	}
	identity := struct {
		Version   string `json:"version"`
		CPUs      int    `json:"cpus"`
		MemoryMiB int    `json:"memory_mib"`
		Kernel    string `json:"kernel"`
		Initrd    string `json:"initrd"`
		Cmdline   string `json:"cmdline"`
		Disk      string `json:"disk"`
		Network   sources.Network
		Port      int `json:"port"`
		Check     sources.Check
	}{
		Version: s.Version, CPUs: s.CPUs, MemoryMiB: s.MemoryMiB,
		Kernel: digest(s.Image.Kernel), Initrd: digest(s.Image.Initrd), Cmdline: s.Image.Cmdline,
		Disk: digest(s.Image.Disk), Network: s.Network, Port: s.Port, Check: s.Check,
	}
	data, err := json.Marshal(identity)
	if err != nil {
		// Marshalling plain strings and ints cannot fail; a failure is a programming error.
		panic(fmt.Sprintf("spec hash: %v", err))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// shortHash is the part of a spec hash that goes into VM names.
func shortHash(hash string) string {
	if len(hash) < 8 {
		return hash
	}
	return hash[:8]
}

// shortRev shortens a commit for logs and messages.
func shortRev(commit string) string {
	if len(commit) < 12 {
		return commit
	}
	return commit[:12]
}

package hypervisor

import (
	"crypto/sha256"
	"fmt"
)

// MACFor is the stable MAC address of the VM called name: QEMU's locally administered
// 52:54:00 prefix and the first three bytes of the SHA-256 of the name. The same VM
// always gets the same MAC (a DHCP server keeps its lease, a neighbour table finds
// it), and the name alone, recorded in the metadata, says what it must be.
func MACFor(name string) string {
	sum := sha256.Sum256([]byte(name))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2])
}

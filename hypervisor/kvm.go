package hypervisor

import "os"

// kvmDevice is where the kernel exposes KVM.
const kvmDevice = "/dev/kvm"

// KVMAvailable reports whether this process can use hardware acceleration: /dev/kvm
// opens read-write. The existence of the node is not enough (CI runners and containers
// often have it without permission, or without a working module), and opening it is
// what QEMU does first. Drivers use TCG when this is false.
func KVMAvailable() bool {
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

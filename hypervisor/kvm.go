package hypervisor

import "os"

// kvmDevice is where the kernel exposes KVM.
const kvmDevice = "/dev/kvm"

// KVMAvailable reports whether this process can use hardware acceleration: /dev/kvm
// opens read-write. The node existing is not enough (CI runners and containers often
// have it without permission), and opening it is what QEMU does first. Drivers use
// TCG when this is false.
func KVMAvailable() bool { return openableRW(kvmDevice) }

func openableRW(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

package hypervisor

import "os"

// KVMDevice is where the kernel exposes KVM.
const KVMDevice = "/dev/kvm"

// pvmModule is present on hosts running PVM, a KVM variant found on some cloud sandboxes:
// /dev/kvm opens and creates VMs there, but only PVM-enabled guest kernels run; a stock
// kernel dies with "KVM internal error". TCG is the only thing that works on such hosts.
const pvmModule = "/sys/module/kvm_pvm"

// KVMAvailable reports whether VMs should use hardware acceleration: /dev/kvm opens
// read-write and is a full KVM. The node existing is not enough (CI runners and
// containers often have it without permission), and opening it is what QEMU does first.
// Every driver asks here, so the choice between KVM and TCG is made in one place.
func KVMAvailable() bool {
	if _, err := os.Stat(pvmModule); err == nil {
		return false
	}
	return openableRW(KVMDevice)
}

func openableRW(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

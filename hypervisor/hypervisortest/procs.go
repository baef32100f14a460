package hypervisortest

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// QEMUProcesses returns the pids of live QEMU processes running the VM called name,
// whoever started them: the direct driver passes "-name <name>", libvirt
// "-name guest=<name>,...". Zombies are not live. Harnesses use it for Traces and
// KillOutOfBand.
func QEMUProcesses(name string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	direct := []byte("\x00-name\x00" + name + "\x00")
	viaLibvirt := []byte("\x00-name\x00guest=" + name + ",")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !(bytes.Contains(cmdline, direct) || bytes.Contains(cmdline, viaLibvirt)) {
			continue
		}
		if zombie(e.Name()) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// KillQEMU SIGKILLs every QEMU process running the VM called name, as a crash or an
// operator would, behind the driver's back. A VM with no live process fails the test.
func KillQEMU(t *testing.T, name string) {
	t.Helper()
	pids := QEMUProcesses(name)
	if len(pids) == 0 {
		t.Fatalf("kill %s out of band: no qemu process runs it", name)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s (pid %d): %v", name, pid, err)
		}
	}
}

func zombie(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

package hypervisortest

import (
	"bytes"
	"os"
	"strconv"
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

func zombie(pid string) bool {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

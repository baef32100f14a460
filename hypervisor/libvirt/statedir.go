package libvirt

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"libvirt.org/go/libvirt"

	"github.com/drover-dev/drover/hypervisor"
)

// qemuConf is where libvirt's QEMU driver reads the user QEMU runs as, when the
// connection cannot say.
const qemuConf = "/etc/libvirt/qemu.conf"

// defaultQEMUUser is the user qemu.conf defaults to on Debian.
const defaultQEMUUser = "libvirt-qemu"

// checkStateDir fails when libvirt's QEMU cannot reach the state directory: every VM
// would otherwise fail to start, after its images were fetched, with "could not open
// kernel file …: Permission denied". Only the system daemon on this host runs QEMU as
// another user; a session daemon runs it as the caller, a remote one on another host.
func (d *Driver) checkStateDir(conn *libvirt.Connect) error {
	if !isSystemURI(d.uri) {
		return nil
	}
	user, err := qemuLabel(conn, d.virtType)
	if err != nil {
		d.log.Warn("cannot read libvirt's QEMU user from the connection; using qemu.conf", "err", err)
		user = qemuConfUser(qemuConf)
	}
	if user == "" {
		return nil // no DAC driver: QEMU runs as root
	}
	if _, gid, err := parseDACLabel(user); err == nil {
		d.qemuGID = gid
	}
	if err := hypervisor.CheckTraversable(d.dir, user); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// isSystemURI reports whether uri names the system QEMU daemon on this host
// (qemu:///system, qemu+unix:///system?socket=…).
func isSystemURI(uri string) bool {
	if !isQEMUURI(uri) || !isLocalURI(uri) {
		return false
	}
	_, rest, _ := strings.Cut(uri, "://")
	path, _, _ := strings.Cut(rest, "?")
	return strings.TrimSuffix(path, "/") == "/system"
}

// qemuConfUser reads `user = "…"` from a qemu.conf, defaulting as libvirt does.
func qemuConfUser(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return defaultQEMUUser
	}
	defer f.Close()
	user := defaultQEMUUser
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "=")
		if !ok || strings.TrimSpace(key) != "user" {
			continue
		}
		val, _, _ = strings.Cut(val, "#")
		if v, err := strconv.Unquote(strings.TrimSpace(val)); err == nil && v != "" {
			user = v
		}
	}
	return user
}

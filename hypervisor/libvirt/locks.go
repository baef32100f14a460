package libvirt

import (
	"fmt"
	"net"
	"strconv"
	"sync"
)

// nameLocks serialises calls on the same VM name (a Destroy racing the Create of the
// same VM) while calls on different VMs run in parallel.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

func (l *nameLocks) lock(name string) (unlock func()) {
	l.mu.Lock()
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{}
		l.m[name] = nl
	}
	nl.refs++
	l.mu.Unlock()

	nl.mu.Lock()
	return l.unlocker(name, nl)
}

// tryLock takes name's lock only if no call holds or waits for it: Sweep uses it to
// keep off names that a Create or Destroy of this process is working on.
func (l *nameLocks) tryLock(name string) (unlock func(), ok bool) {
	l.mu.Lock()
	if l.m[name] != nil {
		l.mu.Unlock()
		return nil, false
	}
	nl := &nameLock{refs: 1}
	nl.mu.Lock()
	l.m[name] = nl
	l.mu.Unlock()
	return l.unlocker(name, nl), true
}

func (l *nameLocks) unlocker(name string, nl *nameLock) func() {
	return func() {
		nl.mu.Unlock()
		l.mu.Lock()
		nl.refs--
		if nl.refs == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
}

// reservePort picks a free loopback port no Create in flight holds: the kernel does
// not know about ports that were picked but not yet bound by QEMU.
func (d *Driver) reservePort() (int, error) {
	d.portMu.Lock()
	defer d.portMu.Unlock()
	const tries = 20
	for range tries {
		port, err := d.pickPort()
		if err != nil {
			return 0, err
		}
		if !d.reserved[port] {
			d.reserved[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("pick a host port: %d picks were all held by vms being created", tries)
}

// releasePorts frees the ports a Create reserved. Once it returns, QEMU holds the port
// it kept, and the others were never bound.
func (d *Driver) releasePorts(ports *[]int) {
	d.portMu.Lock()
	defer d.portMu.Unlock()
	for _, p := range *ports {
		delete(d.reserved, p)
	}
}

// portInUse reports whether something is bound to 127.0.0.1:port right now.
func portInUse(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	l.Close()
	return false
}

package hypervisor

import "sync"

// NameLocks serialises calls on the same VM name (a Destroy racing the Create of the
// same VM) while calls on different VMs run in parallel. The zero value is ready to
// use; a NameLocks must not be copied after first use.
type NameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	mu   sync.Mutex
	refs int
}

// Lock waits for name's lock and returns the function that releases it.
func (l *NameLocks) Lock(name string) (unlock func()) {
	l.mu.Lock()
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{}
		if l.m == nil {
			l.m = map[string]*nameLock{}
		}
		l.m[name] = nl
	}
	nl.refs++
	l.mu.Unlock()

	nl.mu.Lock()
	return l.unlocker(name, nl)
}

// TryLock takes name's lock only if no call holds or waits for it: a sweep uses it to
// keep off names that a Create or Destroy of the same driver is working on.
func (l *NameLocks) TryLock(name string) (unlock func(), ok bool) {
	l.mu.Lock()
	if l.m[name] != nil {
		l.mu.Unlock()
		return nil, false
	}
	nl := &nameLock{refs: 1}
	nl.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	l.m[name] = nl
	l.mu.Unlock()
	return l.unlocker(name, nl), true
}

func (l *NameLocks) unlocker(name string, nl *nameLock) func() {
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

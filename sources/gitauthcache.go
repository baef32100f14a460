package sources

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// fileStamp tells whether a file changed since it was last parsed: a rotation by
// rename gives another inode, an edit in place another size or modification time.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path) // a stat never blocks, whatever the file is
	if err != nil {
		return fileStamp{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || !st.Mode().IsRegular() {
		return fileStamp{}, false
	}
	return fileStamp{dev: uint64(sys.Dev), ino: sys.Ino, size: st.Size(), mtime: st.ModTime()}, true
}

// parsedFile keeps what was parsed from a file until the file changes, so a poll does
// not parse a large known_hosts file twice for nothing.
type parsedFile[T any] struct {
	mu    sync.Mutex
	path  string
	stamp fileStamp
	value T
	ok    bool
}

// get returns the value parsed from path, calling parse only when the file is not the
// one parsed last time.
func (c *parsedFile[T]) get(path string, parse func(string) (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before, stable := stampOf(path)
	if c.ok && stable && c.path == path && c.stamp == before {
		return c.value, nil
	}
	v, err := parse(path)
	if err != nil {
		c.ok = false
		return v, err
	}
	after, _ := stampOf(path)
	// Cached only when the file did not change while it was parsed.
	c.path, c.stamp, c.value, c.ok = path, after, v, stable && before == after
	return v, nil
}

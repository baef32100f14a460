// Package secretfile reads the small secrets Drover is given as files (bearer tokens,
// signing secrets): bounded in size, regular files only, opened so that a FIFO or a
// device named by mistake (or by someone hostile) cannot block or flood Drover.
package secretfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxSize is the largest secret file read: far above any token, far below harm.
const MaxSize = 64 << 10

// ErrNotRegular is wrapped when the path names a FIFO, device, socket or directory.
var ErrNotRegular = errors.New("not a regular file")

// Read returns the file's content with surrounding white space removed. It refuses a
// file that is not regular (checked on the open descriptor, so a swap between check
// and read changes nothing), larger than MaxSize, empty, or holding more than one line.
// Errors name the path, never the content.
func Read(path string) (string, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("read secret %s: %w (%s)", path, ErrNotRegular, fi.Mode().Type())
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", path, err)
	}
	if len(raw) > MaxSize {
		return "", fmt.Errorf("read secret %s: larger than %d bytes", path, MaxSize)
	}
	s := string(bytes.TrimSpace(raw))
	switch {
	case s == "":
		return "", fmt.Errorf("read secret %s: empty", path)
	case bytes.ContainsAny([]byte(s), "\r\n\x00"):
		return "", fmt.Errorf("read secret %s: want one line", path)
	}
	return s, nil
}

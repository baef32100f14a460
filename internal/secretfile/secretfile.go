// Package secretfile is the one reader of the files operators hand Drover secrets in:
// tokens, passwords, passphrases, private keys, CA bundles. Such a path comes from a
// flag, so it may name anything: a FIFO nobody writes (which would block start-up or
// a fetch for ever), a device, a directory, a multi-gigabyte file. A secret file is
// opened without blocking, must be a regular file, and is read up to a bound.
package secretfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxSize bounds a secret file: a token, a password or a private key is far smaller.
const MaxSize = 64 << 10

// ErrInvalid means the file is not one a secret can be read from: not a regular file,
// too large, empty, or more than one line where one is wanted.
var ErrInvalid = errors.New("invalid secret file")

// Read returns the content of the regular file at path, at most max bytes (MaxSize
// when max is 0). Errors name the path, never the content.
func Read(path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = MaxSize
	}
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read secret file %s: %w: not a regular file (%s)", path, ErrInvalid, st.Mode().Type())
	}
	if st.Size() > max {
		return nil, fmt.Errorf("read secret file %s: %w: %d bytes, want at most %d", path, ErrInvalid, st.Size(), max)
	}
	// The file may grow between Stat and the read: the limit holds whatever happens.
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read secret file %s: %w: more than %d bytes", path, ErrInvalid, max)
	}
	return data, nil
}

// ReadLine returns the one line the file at path holds (a token, a password),
// surrounding white space removed. An empty file or one of several lines is an error.
func ReadLine(path string) (string, error) {
	data, err := Read(path, MaxSize)
	if err != nil {
		return "", err
	}
	line := bytes.TrimSpace(data)
	switch {
	case len(line) == 0:
		return "", fmt.Errorf("read secret file %s: %w: empty", path, ErrInvalid)
	case bytes.ContainsAny(line, "\r\n"):
		return "", fmt.Errorf("read secret file %s: %w: want one line", path, ErrInvalid)
	}
	return string(line), nil
}

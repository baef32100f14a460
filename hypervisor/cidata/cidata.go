// Package cidata writes cloud-init NoCloud seed volumes: an ISO 9660 filesystem labelled
// "cidata" holding meta-data, user-data and, when there is one, network-config. It is
// built in Go (go-diskfs) rather than by genisoimage or xorriso, so a driver needs no
// extra tool and the bytes written are exactly the seed's.
//
// The volume carries Rock Ridge and Joliet names. Plain ISO 9660 allows only upper-case
// letters, digits and '_' in names, so without them "meta-data" would reach the guest
// as "META_DAT" or "meta_data", and cloud-init would find no seed.
package cidata

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/drover-dev/drover/hypervisor"
)

// Label is the volume label cloud-init's NoCloud datasource looks for.
const Label = "cidata"

// MaxBytes bounds what one seed may hold, all files together: user-data is bounded by
// the fleet's limits already (1 MiB per file); meta-data and network-config are
// Drover's own and small.
const MaxBytes = 4 << 20

// Write writes seed as a cidata volume at path, atomically (a temporary file beside it,
// renamed into place), readable by its owner only: user-data is the operator's and may
// hold secrets. A crash leaves at most a "<path>.tmp-*" file beside it, which the
// driver's sweep removes with the VM's other leftovers.
func Write(path string, seed hypervisor.Seed) error {
	if err := write(path, seed); err != nil {
		return fmt.Errorf("write cloud-init seed %s: %w", path, err)
	}
	return nil
}

func write(path string, seed hypervisor.Seed) error {
	if len(seed.MetaData) == 0 {
		return errors.New("no meta-data")
	}
	files := []struct {
		name string
		data []byte
	}{{"meta-data", seed.MetaData}, {"user-data", seed.UserData}}
	if seed.NetworkConfig != nil {
		files = append(files, struct {
			name string
			data []byte
		}{"network-config", seed.NetworkConfig})
	}
	total := 0
	for _, f := range files {
		total += len(f.data)
	}
	if total > MaxBytes {
		return fmt.Errorf("seed holds %d bytes, more than %d", total, MaxBytes)
	}

	dir := filepath.Dir(path)
	workspace, err := os.MkdirTemp(dir, filepath.Base(path)+".tmp-ws-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(workspace)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	fs, err := iso9660.Create(file.New(tmp, false), 0, 0, 2048, workspace)
	if err != nil {
		tmp.Close()
		return err
	}
	for _, f := range files {
		if err := addFile(fs, f.name, f.data); err != nil {
			tmp.Close()
			return fmt.Errorf("add %s: %w", f.name, err)
		}
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: Label}); err != nil {
		tmp.Close()
		return fmt.Errorf("finalize: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return err
	}
	keep = true
	return nil
}

func addFile(fs *iso9660.FileSystem, name string, data []byte) error {
	f, err := fs.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Read returns the files of the cidata volume at path, by name, and its label: for
// tests and for drift checks that want to know what a seed holds.
func Read(path string) (label string, files map[string][]byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	fs, err := iso9660.Read(file.New(f, true), info.Size(), 0, 2048)
	if err != nil {
		return "", nil, fmt.Errorf("read seed %s: %w", path, err)
	}
	entries, err := fs.ReadDir(".")
	if err != nil {
		return "", nil, fmt.Errorf("read seed %s: %w", path, err)
	}
	files = map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		r, err := fs.OpenFile("/"+e.Name(), os.O_RDONLY)
		if err != nil {
			return "", nil, fmt.Errorf("read seed %s: %s: %w", path, e.Name(), err)
		}
		data, err := io.ReadAll(io.LimitReader(r, MaxBytes+1))
		r.Close()
		if err != nil {
			return "", nil, fmt.Errorf("read seed %s: %s: %w", path, e.Name(), err)
		}
		files[e.Name()] = data
	}
	// go-diskfs pads the identifier with NULs where ISO 9660 says spaces; blkid, as
	// cloud-init uses it, trims either.
	return strings.TrimRight(fs.Label(), "\x00 "), files, nil
}

// Digest is the hex SHA-256 of the seed file at path, as a driver records it at Create
// to tell later whether the file was swapped.
func Digest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	// A seed is at most MaxBytes of files plus the filesystem around them.
	if _, err := io.Copy(h, io.LimitReader(f, MaxBytes+1<<20)); err != nil {
		return "", fmt.Errorf("hash seed %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

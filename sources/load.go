package sources

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// fleetFile is one file of a fleet, named as errors should name it.
type fleetFile struct {
	name string
	// path is the file's clean slash path in its source, from which the files it names
	// (cloud_init.user_data) are found.
	path string
	data []byte
}

// isFleetFileName says which files of a fleet directory are read.
func isFleetFileName(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// fleetBudget counts the files and bytes of one fleet against MaxFleetFiles,
// MaxFleetFileBytes and MaxFleetTotalBytes. Readers call add with a file's size before
// they read it; a problem names the file and the limit and wraps ErrFleetTooLarge.
type fleetBudget struct {
	files int
	total int64
}

func (b *fleetBudget) add(name string, size int64) *Error {
	b.files++
	b.total += size
	at := Pos{File: name, Line: 1, Col: 1}
	switch {
	case b.files > MaxFleetFiles:
		return &Error{Pos: at, Msg: fmt.Sprintf("one fleet file too many: a fleet has at most %d files", MaxFleetFiles), Err: ErrFleetTooLarge}
	case size > MaxFleetFileBytes:
		return tooLarge(name, size)
	case b.total > MaxFleetTotalBytes:
		return &Error{Pos: at, Msg: fmt.Sprintf("with this file the fleet's files hold %d bytes, more than the %s they may hold together", b.total, fmtBytes(MaxFleetTotalBytes)), Err: ErrFleetTooLarge}
	}
	return nil
}

// readFleetFile reads at most MaxFleetFileBytes+1 bytes of r, so that a file that grew
// after it was measured is still refused without being read whole.
func readFleetFile(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFleetFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFleetFileBytes {
		return nil, Errors{tooLarge(name, int64(len(data)))}
	}
	return data, nil
}

// parseFiles parses every file and merges their services in the given order, reporting
// the errors of all files together, and reads the user-data files they name from src.
// It checks the fleet's limits itself, the user-data files counted in them, so no
// caller can hand it more than a fleet may hold.
func parseFiles(files []fleetFile, src companions) (*Fleet, error) {
	var budget fleetBudget
	for _, file := range files {
		if e := budget.add(file.name, int64(len(file.data))); e != nil {
			return nil, Errors{e}
		}
	}
	f := &Fleet{Services: []Service{}}
	var errs errorSet
	seen := map[string][]byte{}
	for _, file := range files {
		part, partErrs := parseFile(file.name, file.data, MaxServices-len(f.Services))
		errs.merge(partErrs)
		if e := resolveUserData(part.Services, path.Dir(file.path), src, &budget, seen, &errs); e != nil {
			return nil, Errors{e}
		}
		f.Services = append(f.Services, part.Services...)
	}
	for _, e := range checkDuplicates(f.Services) {
		errs.add(e)
	}
	if !errs.empty() {
		return nil, errs.err()
	}
	return f, nil
}

// Load reads the fleet at name in fsys: a file, or a directory whose *.yaml and *.yml
// files (not its subdirectories) are read in name order and their services merged.
// Problems in the fleet are returned as Errors, with file names as paths in fsys; a
// fleet over a limit of limits.go is refused before its files are read.
func Load(fsys fs.FS, name string) (*Fleet, error) {
	return load(fsys, name, func(p string) string { return p })
}

// LoadPath is Load on the operating system's filesystem; errors name files by the
// path given, joined with file names in directory mode.
func LoadPath(name string) (*Fleet, error) {
	info, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", name, err)
	}
	if !info.IsDir() {
		dir, base := filepath.Dir(name), filepath.Base(name)
		return load(os.DirFS(dir), base, func(p string) string {
			if p == base {
				return name
			}
			return filepath.Join(dir, filepath.FromSlash(p))
		})
	}
	return load(os.DirFS(name), ".", func(p string) string { return filepath.Join(name, filepath.FromSlash(p)) })
}

func load(fsys fs.FS, name string, display func(string) string) (*Fleet, error) {
	info, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", display(name), err)
	}
	var budget fleetBudget
	if !info.IsDir() {
		if err := measure(name, info, display, &budget); err != nil {
			return nil, err
		}
		file, err := readOne(fsys, name, display)
		if err != nil {
			return nil, err
		}
		return parseFiles([]fleetFile{file}, fsCompanions{fsys, display})
	}
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("load fleet directory %s: %w", display(name), err)
	}
	// Every file is measured before any is read, so a fleet over a limit costs nothing
	// to refuse.
	var paths []string
	for _, e := range entries { // in name order
		if e.IsDir() || !isFleetFileName(e.Name()) {
			continue
		}
		p := path.Join(name, e.Name())
		info, err := fs.Stat(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", display(p), err)
		}
		if err := measure(p, info, display, &budget); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	var files []fleetFile
	for _, p := range paths {
		file, err := readOne(fsys, p, display)
		if err != nil {
			return nil, err
		}
		files = append(files, file)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load fleet directory %s: %w", display(name), ErrNoFleetFiles)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return parseFiles(files, fsCompanions{fsys, display})
}

// measure adds a file to the budget. Only regular files are fleet files: a FIFO or a
// device would block the reader, or never end.
func measure(p string, info fs.FileInfo, display func(string) string, budget *fleetBudget) error {
	if !info.Mode().IsRegular() {
		return fmt.Errorf("load fleet %s: not a regular file (%s)", display(p), info.Mode().Type())
	}
	if e := budget.add(display(p), info.Size()); e != nil {
		return Errors{e}
	}
	return nil
}

// readOne reads one measured fleet file.
func readOne(fsys fs.FS, p string, display func(string) string) (fleetFile, error) {
	shown := display(p)
	f, err := fsys.Open(p)
	if err != nil {
		return fleetFile{}, fmt.Errorf("load fleet %s: %w", shown, err)
	}
	defer f.Close()
	data, err := readFleetFile(f, shown)
	if err != nil {
		return fleetFile{}, fmt.Errorf("load fleet %s: %w", shown, err)
	}
	return fleetFile{name: shown, path: p, data: data}, nil
}

// fsCompanions reads the files a fleet names from the filesystem its fleet files come
// from. No symlink is followed, on the way or at the end: a fleet names files of its
// own repository, never /etc/shadow through a link.
type fsCompanions struct {
	fsys fs.FS
	show func(string) string
}

func (c fsCompanions) display(p string) string { return c.show(p) }

func (c fsCompanions) stat(p string) (int64, error) {
	parts := strings.Split(p, "/")
	for i := range parts {
		q := path.Join(parts[:i+1]...)
		info, err := fs.Lstat(c.fsys, q)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, errNoCompanion
		}
		if err != nil {
			return 0, err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return 0, fmt.Errorf("%s is a symlink, which is not followed", c.show(q))
		}
		if i < len(parts)-1 && !info.IsDir() {
			return 0, errNoCompanion
		}
		if i == len(parts)-1 {
			if !info.Mode().IsRegular() {
				return 0, fmt.Errorf("not a regular file (%s)", info.Mode().Type())
			}
			return info.Size(), nil
		}
	}
	return 0, errNoCompanion
}

func (c fsCompanions) read(p string) ([]byte, error) {
	f, err := c.fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readFleetFile(f, c.show(p))
}

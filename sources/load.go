package sources

import (
	"fmt"
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
	data []byte
}

// isFleetFileName says which files of a fleet directory are read.
func isFleetFileName(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// parseFiles parses every file and merges their services in the given order, reporting
// the errors of all files together.
func parseFiles(files []fleetFile) (*Fleet, error) {
	f := &Fleet{Services: []Service{}}
	var errs Errors
	for _, file := range files {
		part, partErrs := parseFile(file.name, file.data)
		errs = append(errs, partErrs...)
		f.Services = append(f.Services, part.Services...)
	}
	errs = append(errs, checkDuplicates(f.Services)...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return f, nil
}

// Load reads the fleet at name in fsys: a file, or a directory whose *.yaml and *.yml
// files (not its subdirectories) are read in name order and their services merged.
// Problems in the fleet are returned as Errors, with file names as paths in fsys.
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
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", name, err)
		}
		return Parse(name, data)
	}
	return load(os.DirFS(name), ".", func(p string) string { return filepath.Join(name, filepath.FromSlash(p)) })
}

func load(fsys fs.FS, name string, display func(string) string) (*Fleet, error) {
	info, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("load fleet %s: %w", display(name), err)
	}
	if !info.IsDir() {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", display(name), err)
		}
		return parseFiles([]fleetFile{{name: display(name), data: data}})
	}
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("load fleet directory %s: %w", display(name), err)
	}
	var files []fleetFile
	for _, e := range entries {
		if e.IsDir() || !isFleetFileName(e.Name()) {
			continue
		}
		p := path.Join(name, e.Name())
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("load fleet %s: %w", display(p), err)
		}
		files = append(files, fleetFile{name: display(p), data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load fleet directory %s: %w", display(name), ErrNoFleetFiles)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return parseFiles(files)
}

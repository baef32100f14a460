package sources

import (
	"fmt"
	"path"
	"sort"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// fleetFilesAt reads the fleet file at p in tree, or the fleet files of directory p.
// The count and the size of every file are checked against the limits before any
// content is read: a commit with a 2 GB fleet file costs a tree lookup, not 2 GB.
func fleetFilesAt(tree *object.Tree, p string) ([]fleetFile, error) {
	var blobs []*object.File
	if p == "." {
		entries, err := fleetEntries(tree, p)
		if err != nil {
			return nil, err
		}
		blobs = entries
	} else {
		entry, err := tree.FindEntry(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrFleetNotFound, p)
		}
		switch entry.Mode {
		case filemode.Regular, filemode.Executable:
			file, err := tree.TreeEntryFile(entry)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			file.Name = p
			blobs = []*object.File{file}
		case filemode.Dir:
			dir, err := tree.Tree(p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			if blobs, err = fleetEntries(dir, p); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s is not a file or directory (git mode %s); symlinks and submodules are not followed", p, entry.Mode)
		}
	}

	var total int64
	for _, f := range blobs {
		if f.Size > MaxFleetFileBytes {
			return nil, fmt.Errorf("%s is %d bytes, more than the %d a fleet file may have", f.Name, f.Size, MaxFleetFileBytes)
		}
		if total += f.Size; total > MaxFleetTotalBytes {
			return nil, fmt.Errorf("%s: fleet files total more than the %d bytes a fleet may have (%d up to %s)", p, MaxFleetTotalBytes, total, f.Name)
		}
	}
	files := make([]fleetFile, 0, len(blobs))
	for _, f := range blobs {
		data, err := readBlob(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.Name, err)
		}
		files = append(files, fleetFile{name: f.Name, path: f.Name, data: data})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

// fleetEntries returns the fleet files of dir, named by their repository path, without
// reading them.
func fleetEntries(dir *object.Tree, p string) ([]*object.File, error) {
	var idx []int
	for i := range dir.Entries {
		e := &dir.Entries[i]
		if e.Mode.IsFile() && e.Mode != filemode.Symlink && isFleetFileName(e.Name) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, fmt.Errorf("directory %s: %w", p, ErrNoFleetFiles)
	}
	if len(idx) > MaxFleetFiles {
		return nil, fmt.Errorf("directory %s has %d fleet files, more than the %d a fleet may have", p, len(idx), MaxFleetFiles)
	}
	files := make([]*object.File, 0, len(idx))
	for _, i := range idx {
		e := &dir.Entries[i]
		name := path.Join(p, e.Name)
		f, err := dir.TreeEntryFile(e)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		f.Name = name
		files = append(files, f)
	}
	return files, nil
}

// readBlob reads f, which was checked against MaxFleetFileBytes by its size; the read
// is bounded too (readFleetFile), in case the object store lied about it.
func readBlob(f *object.File) ([]byte, error) {
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readFleetFile(r, f.Name)
}

// treeCompanions reads the files a fleet names from the commit's tree its fleet files
// come from. Only regular blobs are read: a symlink (which git stores as a blob of its
// target's name) or a submodule is refused, and a path through one is not found.
type treeCompanions struct{ tree *object.Tree }

func (c treeCompanions) display(p string) string { return p }

func (c treeCompanions) entry(p string) (*object.File, error) {
	entry, err := c.tree.FindEntry(p)
	if err != nil {
		return nil, errNoCompanion
	}
	switch entry.Mode {
	case filemode.Regular, filemode.Executable:
	case filemode.Symlink:
		return nil, fmt.Errorf("a symlink, which is not followed")
	default:
		return nil, fmt.Errorf("not a regular file (git mode %s)", entry.Mode)
	}
	f, err := c.tree.TreeEntryFile(entry)
	if err != nil {
		return nil, err
	}
	f.Name = p
	return f, nil
}

func (c treeCompanions) stat(p string) (int64, error) {
	f, err := c.entry(p)
	if err != nil {
		return 0, err
	}
	return f.Size, nil
}

func (c treeCompanions) read(p string) ([]byte, error) {
	f, err := c.entry(p)
	if err != nil {
		return nil, err
	}
	return readBlob(f)
}

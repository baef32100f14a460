package sources

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

func service(name string) string {
	return `  - name: ` + name + `
    version: v1
    image: {disk: {url: "file:///d", sha256: "` + hexA + `"}}
    port: 80
    check: {tcp: true}
`
}

func names(f *Fleet) []string {
	var out []string
	for _, s := range f.Services {
		out = append(out, s.Name+"@"+s.Pos.String())
	}
	return out
}

func TestLoadDirectory(t *testing.T) {
	fsys := fstest.MapFS{
		"fleet/b.yml":          {Data: []byte("services:\n" + service("api"))},
		"fleet/a.yaml":         {Data: []byte("services:\n" + service("web") + service("db"))},
		"fleet/c.yaml":         {Data: []byte("services: []\n")},
		"fleet/README.md":      {Data: []byte("not yaml")},
		"fleet/sub/x.yaml":     {Data: []byte("not read: subdirectories are ignored")},
		"fleet/notes.yaml.bak": {Data: []byte("ignored")},
	}
	f, err := Load(fsys, "fleet")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []string{"web@fleet/a.yaml:2:5", "db@fleet/a.yaml:7:5", "api@fleet/b.yml:2:5"}
	if got := names(f); !reflect.DeepEqual(got, want) {
		t.Errorf("services: got %v, want %v", got, want)
	}

	f, err = Load(fsys, "fleet/b.yml")
	if err != nil {
		t.Fatalf("Load file: %v", err)
	}
	if got, want := names(f), []string{"api@fleet/b.yml:2:5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("services: got %v, want %v", got, want)
	}
}

func TestLoadDirectoryErrors(t *testing.T) {
	tests := []struct {
		name string
		fsys fstest.MapFS
		want []string
	}{
		{
			name: "duplicate across files",
			fsys: fstest.MapFS{
				"d/1.yaml": {Data: []byte("services:\n" + service("web"))},
				"d/2.yaml": {Data: []byte("services:\n" + service("db") + service("web"))},
			},
			want: []string{`d/2.yaml:7:5: duplicate service name "web" (first declared at d/1.yaml:2:5)`},
		},
		{
			name: "errors of every file",
			fsys: fstest.MapFS{
				"d/1.yaml": {Data: []byte("services:\n  - name: web\n")},
				"d/2.yaml": {Data: []byte("")},
				"d/3.yml":  {Data: []byte("services: [\n")},
			},
			want: []string{
				`d/1.yaml:2:5: service web: missing required field "version"`,
				`d/1.yaml:2:5: service web: missing required field "image"`,
				`d/1.yaml:2:5: service web: missing required field "port"`,
				`d/1.yaml:2:5: service web: missing required field "check"`,
				`d/2.yaml:1:1: empty fleet file: want a mapping with a "services" list`,
				`d/3.yml:1:1: invalid YAML: did not find expected node content`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Load(tt.fsys, "d")
			if f != nil {
				t.Errorf("Load returned a fleet with errors: %v", names(f))
			}
			if got := errorLines(t, err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got errors:\n\t%s\nwant errors:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	fsys := fstest.MapFS{"empty/README.md": {Data: []byte("x")}}
	if _, err := Load(fsys, "empty"); !errors.Is(err, ErrNoFleetFiles) {
		t.Errorf("Load(empty dir) = %v, want ErrNoFleetFiles", err)
	}
	_, err := Load(fsys, "nope.yaml")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist naming the file", err)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Errorf("Load(missing) returned Errors; an unreadable path is not a fleet problem")
	}
}

func TestLoadPath(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "services:\n"+service("web"))
	write("b.yaml", "services:\n  - name: db\n    version: v1\n    image: {}\n    port: 1\n    check: {tcp: true}\n")

	_, err := LoadPath(dir)
	want := []string{filepath.Join(dir, "b.yaml") + `:4:12: service db: image: at least one of kernel or disk is required`}
	if got := errorLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("LoadPath(dir) errors:\n got %q\nwant %q", got, want)
	}

	file := filepath.Join(dir, "a.yaml")
	f, err := LoadPath(file)
	if err != nil {
		t.Fatalf("LoadPath(file): %v", err)
	}
	if got, want := names(f), []string{"web@" + file + ":2:5"}; !reflect.DeepEqual(got, want) {
		t.Errorf("LoadPath(file): got %v, want %v", got, want)
	}
	if _, err := LoadPath(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPath(missing) = %v, want fs.ErrNotExist", err)
	}
}

// bigFS serves files of a stated size without holding them: Load must refuse them on
// their size, before reading. Reading one fails the test.
type bigFS struct {
	t     *testing.T
	sizes map[string]int64 // file name in dir "d" -> size
}

type bigInfo struct {
	name string
	size int64
	dir  bool
}

func (i bigInfo) Name() string { return i.name }
func (i bigInfo) Size() int64  { return i.size }
func (i bigInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i bigInfo) ModTime() time.Time { return time.Time{} }
func (i bigInfo) IsDir() bool        { return i.dir }
func (i bigInfo) Sys() any           { return nil }

func (b bigFS) Stat(name string) (fs.FileInfo, error) {
	if name == "d" {
		return bigInfo{name: "d", dir: true}, nil
	}
	if size, ok := b.sizes[strings.TrimPrefix(name, "d/")]; ok {
		return bigInfo{name: path.Base(name), size: size}, nil
	}
	return nil, fs.ErrNotExist
}

func (b bigFS) ReadDir(name string) ([]fs.DirEntry, error) {
	var es []fs.DirEntry
	for n, size := range b.sizes {
		es = append(es, fs.FileInfoToDirEntry(bigInfo{name: n, size: size}))
	}
	slices.SortFunc(es, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return es, nil
}

func (b bigFS) Open(name string) (fs.File, error) {
	if name == "d" {
		return nil, errors.New("open of the directory: use ReadDir")
	}
	if size, ok := b.sizes[strings.TrimPrefix(name, "d/")]; ok && size > 1000 {
		b.t.Errorf("Load opened %s, a file over the limits, to read it", name)
	}
	return fstest.MapFS{name: {Data: []byte("services: []\n")}}.Open(name)
}

func TestLoadLimits(t *testing.T) {
	many := map[string]int64{}
	for i := range MaxFleetFiles + 1 {
		many[fmt.Sprintf("f%03d.yaml", i)] = 13
	}
	tests := []struct {
		name  string
		sizes map[string]int64
		want  string
	}{
		{"file over MaxFleetFileBytes", map[string]int64{"a.yaml": 13, "big.yaml": MaxFleetFileBytes + 1},
			"d/big.yaml:1:1: file is 1048577 bytes, more than the 1 MiB a fleet file may have"},
		{"huge file", map[string]int64{"big.yaml": 1 << 40},
			"d/big.yaml:1:1: file is 1099511627776 bytes, more than the 1 MiB a fleet file may have"},
		{"too many files", many,
			fmt.Sprintf("d/f%03d.yaml:1:1: one fleet file too many: a fleet has at most %d files", MaxFleetFiles, MaxFleetFiles)},
		{"files over MaxFleetTotalBytes together", map[string]int64{"1.yaml": MaxFleetFileBytes, "2.yaml": MaxFleetFileBytes, "3.yaml": MaxFleetFileBytes, "4.yaml": MaxFleetFileBytes, "5.yaml": 1},
			"d/5.yaml:1:1: with this file the fleet's files hold 4194305 bytes, more than the 4 MiB they may hold together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(bigFS{t: t, sizes: tt.sizes}, "d")
			if !errors.Is(err, ErrFleetTooLarge) {
				t.Errorf("Load = %v, want ErrFleetTooLarge", err)
			}
			if got := errorLines(t, err); len(got) != 1 || got[0] != tt.want {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// parseFiles is what the git source calls with the blobs it read: it enforces the limits
// itself, whatever its caller checked.
func TestParseFilesLimits(t *testing.T) {
	big := []fleetFile{{name: "big.yaml", data: make([]byte, MaxFleetFileBytes+1)}}
	var many []fleetFile
	for i := range MaxFleetFiles + 1 {
		many = append(many, fleetFile{name: fmt.Sprintf("f%03d.yaml", i), data: []byte("services: []\n")})
	}
	var total []fleetFile
	for i := range 5 {
		total = append(total, fleetFile{name: fmt.Sprintf("%d.yaml", i), data: make([]byte, MaxFleetFileBytes)})
	}
	for name, files := range map[string][]fleetFile{"big": big, "many": many, "total": total} {
		_, err := parseFiles(files, noCompanions{})
		if !errors.Is(err, ErrFleetTooLarge) {
			t.Errorf("parseFiles(%s) = %.200v, want ErrFleetTooLarge", name, err)
		}
	}
	// And Parse, for one file.
	if _, err := Parse("big.yaml", big[0].data); !errors.Is(err, ErrFleetTooLarge) {
		t.Errorf("Parse(big) = %.200v, want ErrFleetTooLarge", err)
	}
}

// A fleet directory holding more services than MaxServices in all is refused at the
// first one too many, in file order.
func TestLoadTooManyServices(t *testing.T) {
	fsys := fstest.MapFS{}
	for i := range 3 {
		var b strings.Builder
		b.WriteString("services:\n")
		for j := range MaxServices / 2 {
			b.WriteString(service(fmt.Sprintf("s%d-%d", i, j)))
		}
		fsys[fmt.Sprintf("d/%d.yaml", i)] = &fstest.MapFile{Data: []byte(b.String())}
	}
	_, err := Load(fsys, "d")
	want := fmt.Sprintf("d/2.yaml:2:5: one service too many: a fleet has at most %d", MaxServices)
	if got := errorLines(t, err); len(got) != 1 || got[0] != want {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

// A FIFO named like a fleet file would block the reader forever: it is refused.
func TestLoadPathNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, p := range []string{dir, fifo} {
		_, err := LoadPath(p)
		if err == nil || !strings.Contains(err.Error(), fifo+": not a regular file") {
			t.Errorf("LoadPath(%s) = %v, want not a regular file naming %s", p, err, fifo)
		}
	}
}

// LoadPath measures a file before reading it.
func TestLoadPathTooLarge(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFleetFileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, big} {
		_, err := LoadPath(p)
		want := big + ":1:1: file is 1048577 bytes, more than the 1 MiB a fleet file may have"
		if !errors.Is(err, ErrFleetTooLarge) || err.Error() != want {
			t.Errorf("LoadPath(%s) = %v, want %s", p, err, want)
		}
	}
}

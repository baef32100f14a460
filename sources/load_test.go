package sources

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
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

package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func diskService(extra string) string {
	return `services:
  - name: web
    version: v1
    image:
      disk: {url: "file:///d", sha256: "` + hexA + `"}
    port: 80
    check: {http: /}
` + extra
}

const goodUserData = "## template: jinja\n#cloud-config\nwrite_files:\n  - path: /srv/healthz\n    content: {{ ds.meta_data.drover.version }}\nruncmd:\n  - [systemctl, start, x]\n"

func TestParseImageDiskFields(t *testing.T) {
	tests := []struct {
		extra    string
		firmware string
		size     int64
	}{
		{"", "bios", 0},
		{"      firmware: uefi\n", "uefi", 0},
		{"      firmware: bios\n      disk_size: 512MiB\n", "bios", 512 << 20},
		{"      disk_size: 20GiB\n", "bios", 20 << 30},
	}
	for _, tt := range tests {
		in := strings.Replace(diskService(""), "    port: 80\n", tt.extra+"    port: 80\n", 1)
		f, err := Parse("f.yaml", []byte(in))
		if err != nil {
			t.Errorf("%q: %v", tt.extra, err)
			continue
		}
		img := f.Services[0].Image
		if img.Firmware != tt.firmware || img.DiskSizeBytes != tt.size {
			t.Errorf("%q: got firmware %q size %d, want %q %d", tt.extra, img.Firmware, img.DiskSizeBytes, tt.firmware, tt.size)
		}
	}
}

func TestParseImageDiskFieldErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"firmware bad", strings.Replace(diskService(""), "    port:", "      firmware: efi\n    port:", 1),
			`f.yaml:6:17: service web: image.firmware: want bios or uefi, got "efi"`},
		{"firmware with kernel", strings.Replace(minimal(""), "    port:", "      firmware: uefi\n    port:", 1),
			`f.yaml:6:7: service web: image.firmware applies to a disk booted without a kernel; remove it or image.kernel`},
		{"disk_size no unit", strings.Replace(diskService(""), "    port:", "      disk_size: 10\n    port:", 1),
			`f.yaml:6:18: service web: image.disk_size: want a size with unit MiB or GiB such as 512MiB or 20GiB, got integer 10`},
		{"disk_size zero", strings.Replace(diskService(""), "    port:", "      disk_size: 0MiB\n    port:", 1),
			`f.yaml:6:18: service web: image.disk_size must be at least 1MiB, got 0MiB`},
		{"disk_size huge", strings.Replace(diskService(""), "    port:", "      disk_size: 99999999GiB\n    port:", 1),
			`f.yaml:6:18: service web: image.disk_size 99999999GiB is too large: at most 65536GiB`},
		{"disk_size without disk", strings.Replace(minimal(""), "    port:", "      disk_size: 1GiB\n    port:", 1),
			`f.yaml:6:7: service web: image.disk_size needs image.disk`},
	}
	for _, tt := range tests {
		_, err := Parse("f.yaml", []byte(tt.in))
		if err == nil {
			t.Errorf("%s: no error, want %s", tt.name, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestLoadUserData(t *testing.T) {
	fsys := fstest.MapFS{
		"fleet/web.yaml":          {Data: []byte(diskService("    cloud_init: {user_data: cloud/web.yaml}\n"))},
		"fleet/cloud/web.yaml":    {Data: []byte(goodUserData)},
		"fleet/api.yaml":          {Data: []byte(strings.Replace(diskService("    cloud_init:\n      user_data: cloud/web.yaml\n"), "name: web", "name: api", 1))},
		"fleet/cloud/README.yaml": {Data: []byte("not read: only the files services name are")},
	}
	f, err := Load(fsys, "fleet")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, s := range f.Services {
		if s.CloudInit == nil || string(s.CloudInit.Content) != goodUserData {
			t.Errorf("service %s: cloud_init %+v, want the content of fleet/cloud/web.yaml", s.Name, s.CloudInit)
		}
	}
}

func TestLoadUserDataErrors(t *testing.T) {
	withUD := func(p string) []byte { return []byte(diskService("    cloud_init: {user_data: " + p + "}\n")) }
	tests := []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"missing", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}},
			`f.yaml:8:18: service web: cloud_init.user_data: ud.yaml does not exist at this revision`},
		{"dotdot", fstest.MapFS{"d/f.yaml": {Data: withUD("../ud.yaml")}, "ud.yaml": {Data: []byte(goodUserData)}},
			`d/f.yaml:8:29: service web: cloud_init.user_data "../ud.yaml": ".." is not allowed: the file must be in the fleet file's directory or below it`},
		{"absolute", fstest.MapFS{"f.yaml": {Data: withUD("/etc/passwd")}},
			`f.yaml:8:29: service web: cloud_init.user_data "/etc/passwd": want a path relative to the fleet file, not an absolute one`},
		{"symlink", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: []byte("/etc/shadow"), Mode: os.ModeSymlink}},
			`f.yaml:8:18: service web: cloud_init.user_data: ud.yaml: ud.yaml is a symlink, which is not followed`},
		{"not cloud-config", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: []byte("#!/bin/sh\necho hi\n")}},
			`ud.yaml:1:1: user-data: want #cloud-config on line 1 (or "## template: jinja" then #cloud-config), got "#!/bin/sh"`},
		{"jinja without cloud-config", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: []byte("## template: jinja\nruncmd: []\n")}},
			`ud.yaml:2:1: user-data: want #cloud-config on line 2 (or "## template: jinja" then #cloud-config), got "runcmd: []"`},
		{"invalid yaml", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: []byte("#cloud-config\nruncmd:\n\t- x\n")}},
			`ud.yaml:3:1: user-data: invalid YAML: found character that cannot start any token`},
		{"not a mapping", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: []byte("#cloud-config\n- a\n- b\n")}},
			`ud.yaml:2:1: user-data: want a YAML mapping of cloud-config modules, got a list`},
		{"too large", fstest.MapFS{"f.yaml": {Data: withUD("ud.yaml")}, "ud.yaml": {Data: append([]byte("#cloud-config\n#"), make([]byte, MaxFleetFileBytes)...)}},
			`ud.yaml:1:1: file is 1048591 bytes, more than the 1 MiB a fleet file may have`},
	}
	for _, tt := range tests {
		name := "f.yaml"
		if _, ok := tt.fsys["d/f.yaml"]; ok {
			name = "d/f.yaml"
		}
		_, err := Load(tt.fsys, name)
		if err == nil {
			t.Errorf("%s: no error, want %s", tt.name, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

// The directory loader refuses a symlinked directory on the way to the file too: the
// link could lead anywhere on the host.
func TestLoadPathUserDataSymlinkDir(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "ud.yaml"), []byte(goodUserData), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "cloud")); err != nil {
		t.Fatal(err)
	}
	fleet := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(fleet, []byte(diskService("    cloud_init: {user_data: cloud/ud.yaml}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPath(fleet)
	want := fleet + ":8:18: service web: cloud_init.user_data: " + filepath.Join(dir, "cloud/ud.yaml") + ": " + filepath.Join(dir, "cloud") + " is a symlink, which is not followed"
	if err == nil || err.Error() != want {
		t.Errorf("LoadPath:\n got %v\nwant %s", err, want)
	}
	// Without the link, the same file beside the fleet file is read.
	if err := os.Remove(filepath.Join(dir, "cloud")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cloud"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cloud/ud.yaml"), []byte(goodUserData), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadPath(fleet)
	if err != nil {
		t.Fatalf("LoadPath: %v", err)
	}
	if got := string(f.Services[0].CloudInit.Content); got != goodUserData {
		t.Errorf("content %q, want %q", got, goodUserData)
	}
}

// The git source reads user-data from the commit it read the fleet at, beside the
// fleet file in the repository, and follows no symlink committed there.
func TestGitUserData(t *testing.T) {
	requireGit(t)
	r := newTestRepo(t)
	fleet := diskService("    cloud_init: {user_data: cloud/web.yaml}\n")
	first := r.commit(t, map[string]*string{"fleets/prod.yaml": ptr(fleet), "fleets/cloud/web.yaml": ptr(goodUserData)})
	second := r.commit(t, map[string]*string{"fleets/cloud/web.yaml": ptr(goodUserData + "# v2\n")})
	g := newGit(t, GitConfig{URL: r.dir, Path: "fleets/prod.yaml"})
	if _, err := g.Read(t.Context()); err != nil {
		t.Fatalf("Read: %v", err)
	}
	for commit, want := range map[string]string{first: goodUserData, second: goodUserData + "# v2\n"} {
		f, err := g.Fleet(t.Context(), commit)
		if err != nil {
			t.Fatalf("Fleet(%s): %v", commit[:8], err)
		}
		if got := string(f.Services[0].CloudInit.Content); got != want {
			t.Errorf("user-data at %s: got %q, want %q", commit[:8], got, want)
		}
	}

	// A committed symlink (to a host file) is refused, and so is a missing file.
	if err := os.Remove(filepath.Join(r.dir, "fleets/cloud/web.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(r.dir, "fleets/cloud/web.yaml")); err != nil {
		t.Fatal(err)
	}
	wt, err := r.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("fleets/cloud/web.yaml"); err != nil {
		t.Fatal(err)
	}
	linked := r.commit(t, map[string]*string{})
	missing := r.commit(t, map[string]*string{"fleets/cloud/web.yaml": nil})
	if _, err := g.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	for commit, want := range map[string]string{
		linked:  "fleets/prod.yaml:8:18: service web: cloud_init.user_data: fleets/cloud/web.yaml: a symlink, which is not followed",
		missing: "fleets/prod.yaml:8:18: service web: cloud_init.user_data: fleets/cloud/web.yaml does not exist at this revision",
	} {
		_, err := g.Fleet(t.Context(), commit)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Fleet(%s): got %v, want %s", commit[:8], err, want)
		}
	}
}

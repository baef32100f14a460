package cidata

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/testenv"
)

var testSeed = hypervisor.Seed{
	MetaData:      []byte("instance-id: web-1\nlocal-hostname: web-1\n"),
	UserData:      []byte("#cloud-config\nruncmd: [[touch, /x]]\n"),
	NetworkConfig: []byte("version: 2\n"),
}

func TestWriteRead(t *testing.T) {
	for _, tt := range []struct {
		name string
		seed hypervisor.Seed
		want map[string]string
	}{
		{"all three", testSeed, map[string]string{
			"meta-data": string(testSeed.MetaData), "user-data": string(testSeed.UserData), "network-config": "version: 2\n"}},
		{"no network-config", hypervisor.Seed{MetaData: testSeed.MetaData}, map[string]string{
			"meta-data": string(testSeed.MetaData), "user-data": ""}},
	} {
		p := filepath.Join(t.TempDir(), "seed.iso")
		if err := Write(p, tt.seed); err != nil {
			t.Fatalf("%s: Write: %v", tt.name, err)
		}
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", tt.name, info.Mode().Perm())
		}
		label, files, err := Read(p)
		if err != nil {
			t.Fatalf("%s: Read: %v", tt.name, err)
		}
		got := map[string]string{}
		for k, v := range files {
			got[k] = string(v)
		}
		if label != Label || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got label %q files %q, want %q %q", tt.name, label, got, Label, tt.want)
		}
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "*tmp*"))
		if len(left) != 0 {
			t.Errorf("%s: left behind %v", tt.name, left)
		}
	}
}

func TestWriteRefuses(t *testing.T) {
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "a.iso"), hypervisor.Seed{}); err == nil {
		t.Errorf("Write without meta-data: no error")
	}
	big := hypervisor.Seed{MetaData: []byte("x"), UserData: make([]byte, MaxBytes)}
	if err := Write(filepath.Join(dir, "b.iso"), big); err == nil {
		t.Errorf("Write of %d bytes: no error", MaxBytes+1)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left behind %v", left)
	}
}

// The label is what cloud-init's NoCloud looks for, with blkid as it does. That the
// guest's kernel sees "meta-data" with its dash is proven by the Debian e2e test, whose
// real cloud-init reads the seed (the host's kernel here may have no iso9660 to mount).
func TestBlkidSeesLabel(t *testing.T) {
	if _, err := exec.LookPath("blkid"); err != nil {
		testenv.Unavailable(t, "blkid is not installed (util-linux)")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "seed.iso")
	if err := Write(p, testSeed); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("blkid", "-o", "value", "-s", "LABEL", p).CombinedOutput()
	if err != nil || string(out) != "cidata\n" {
		t.Errorf("blkid LABEL: %q (%v), want cidata", out, err)
	}
	out, err = exec.Command("blkid", "-o", "value", "-s", "TYPE", p).CombinedOutput()
	if err != nil || string(out) != "iso9660\n" {
		t.Errorf("blkid TYPE: %q (%v), want iso9660", out, err)
	}
}

func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "seed.iso")
	seed := testSeed
	seed.UserData = make([]byte, 64<<10)
	copy(seed.UserData, "#cloud-config\n")
	for b.Loop() {
		if err := Write(p, seed); err != nil {
			b.Fatal(err)
		}
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/drover-dev/drover/testenv"
)

// TestVagrantfile runs `vagrant validate` on the repository's Vagrantfile, with the
// libvirt provider it names (vagrant-libvirt then checks its provider settings too: an
// unknown one fails), and `bash -n` on each of its provisioning scripts. `vagrant up`
// itself needs a box download and is not run here.
func TestVagrantfile(t *testing.T) {
	vagrant, err := exec.LookPath("vagrant")
	if err != nil {
		testenv.Unavailable(t, "vagrant not installed (Debian packages vagrant, vagrant-libvirt)")
	}
	src, err := os.ReadFile("../../Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Vagrantfile"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vagrant, "validate")
	cmd.Dir = dir
	// Vagrant's own state (plugins index, box list) in the test's directory, not in ~.
	cmd.Env = append(os.Environ(), "VAGRANT_HOME="+filepath.Join(dir, "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validated successfully") {
		t.Errorf("vagrant validate: %v\n%s", err, out)
	}

	scripts := regexp.MustCompile(`(?s)<<~'SHELL'\n(.*?)\n\s*SHELL\n`).FindAllSubmatch(src, -1)
	if len(scripts) < 3 {
		t.Fatalf("found %d provisioning scripts in the Vagrantfile, want the go, build and demo ones", len(scripts))
	}
	for i, s := range scripts {
		check := exec.Command("bash", "-n")
		check.Stdin = strings.NewReader(string(s[1]))
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("provisioning script %d: bash -n: %v\n%s\n%s", i+1, err, out, s[1])
		}
	}
	for _, want := range []string{`config.vm.box = "debian/bookworm64"`, "sha256sum --check", "/drover/go.mod", "make deps", "make testenv build", "systemd-run --unit=drover-demo", "make demo", "guest: 7070", "guest: 18500"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("the Vagrantfile no longer says %q", want)
		}
	}
}

package main

import (
	"bufio"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/drover-dev/drover/testenv"
)

// TestSystemdUnit checks dist/drover.service with systemd's own verifier, its ExecStart
// pointed at a binary built now, and that it keeps the hardening the README promises.
// systemd-analyze prints unknown or misspelt keys as warnings and still exits 0, so any
// output at all fails the test.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Unavailable(t, "systemd-analyze not installed (Debian package systemd)")
	}
	unit, err := os.ReadFile("../../dist/drover.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/drover", "ProtectHome=yes", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "StateDirectory=drover", "Restart=always", "EnvironmentFile=-/etc/drover/drover.env",
		"KillMode=process", "ExecStart=/usr/local/bin/drover run",
	} {
		if !slices.Contains(strings.Split(string(unit), "\n"), want) {
			t.Errorf("dist/drover.service has no line %q", want)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "drover")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build drover: %v\n%s", err, out)
	}
	copyUnit := filepath.Join(dir, "drover.service")
	if err := os.WriteFile(copyUnit, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/drover", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyUnit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify dist/drover.service: %v\n%s", err, out)
	}
}

var envLineRE = regexp.MustCompile(`^#?(DROVER_[A-Z0-9_]+)=(.*)$`)

// TestEnvFileNamesEveryFlag: every flag of `drover run` is documented in dist/drover.env,
// every DROVER_* there is a real flag, and every value shown there is one the flag takes.
func TestEnvFileNamesEveryFlag(t *testing.T) {
	f, err := os.Open("../../dist/drover.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	shown := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := envLineRE.FindStringSubmatch(sc.Text()); m != nil {
			if _, dup := shown[m[1]]; dup {
				t.Errorf("dist/drover.env sets %s twice", m[1])
			}
			shown[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	o.register(fs, true)
	flags := map[string]bool{}
	fs.VisitAll(func(fl *flag.Flag) {
		key := "DROVER_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		flags[key] = true
		if _, ok := shown[key]; !ok {
			t.Errorf("flag --%s: %s is not in dist/drover.env", fl.Name, key)
		}
	})
	for key, value := range shown {
		if !flags[key] {
			t.Errorf("dist/drover.env names %s, which is no flag of drover run", key)
			continue
		}
		t.Setenv(key, value)
	}
	// The values shown are accepted as they are written.
	if err := envDefaults(fs); err != nil {
		t.Errorf("a value in dist/drover.env is refused: %v", err)
	}
}

package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-dev/drover/testenv"
)

// TestMetricsMove runs the real `drover run` and scrapes /metrics: on an empty fleet
// the passes and the git fetches are reported by the parts that do them, and a new
// commit moves the fetched bytes; a 1-VM service then moves the image bytes, the
// health gate and the rollouts. promtool accepts the scrapes.
func TestMetricsMove(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not installed (Debian package prometheus)")
	}
	images := testenv.Images(t)
	consul := testenv.Consul(t)
	repo := testenv.NewRepo(t)
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "empty fleet")
	state := testenv.StateDir(t)
	const service = "e2e-metrics"
	t.Cleanup(func() { destroyService(t, "qemu", "", state, service) })
	bin := buildCrashDrover(t)
	p := startLeaderProc(t, bin, "drover", append([]string{"run", "--repo", repo.URL(), "--state-dir", state, "--consul", consul.Addr,
		"--driver", "qemu", "--interval", "1s", "--listen", "127.0.0.1:0"}, imageRootArgs(images)...)...)
	p.waitLog(t, `msg="tracking revision"`, time.Minute)
	m := regexp.MustCompile(`metrics=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(p.log())
	if m == nil {
		t.Fatalf("no metrics endpoint logged:\n%s", p.log())
	}
	url := m[1]

	// scrapeUntil scrapes until cond holds on the samples, for at most a minute.
	scrapeUntil := func(what string, cond func(samples) bool) (samples, string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			code, body := get(t, url, "")
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d\n%s", url, code, body)
			}
			s := parseSamples(t, body)
			if cond(s) {
				return s, body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within a minute; last scrape:\n%s", what, grepDrover(body))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first, body := scrapeUntil("a pass and a fetch reported", func(s samples) bool {
		return s.sum(`drover_pass_duration_seconds_count{result="ok"}`) > 0 && s.sum("drover_git_fetch_bytes_total") > 0
	})
	if n := first.sum("drover_git_fetch_errors_total"); n != 0 {
		t.Errorf("drover_git_fetch_errors_total = %v, want 0", n)
	}
	if n := first.sum(`drover_pass_duration_seconds_count{result="error"}`); n != 0 {
		t.Errorf(`drover_pass_duration_seconds_count{result="error"} = %v, want 0`, n)
	}
	t.Logf("first scrape: %v passes, %v bytes fetched", first.sum(`drover_pass_duration_seconds_count{result="ok"}`), first.sum("drover_git_fetch_bytes_total"))
	checkMetrics := func(body string) {
		t.Helper()
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the real scrape: %v\n%s", err, out)
		}
	}
	checkMetrics(body)

	// A new commit is fetched: its pack moves the bytes; the polls between move the passes.
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n# second\n"}, "second")
	scrapeUntil("the second commit's pack and more passes reported", func(s samples) bool {
		return s.sum("drover_git_fetch_bytes_total") > first.sum("drover_git_fetch_bytes_total") &&
			s.sum(`drover_pass_duration_seconds_count{result="ok"}`) > first.sum(`drover_pass_duration_seconds_count{result="ok"}`)
	})

	// One VM: its kernel and initrd are copied into the cache (file://, counted as
	// downloads), it passes the gate, the rollout succeeds.
	repo.Commit(t, map[string]string{"fleet.yaml": images.FleetYAML(testenv.Service{Name: service, Version: "1", Replicas: 1})}, "one vm")
	gate := `drover_health_gate_wait_seconds_count{result="passed",service="` + service + `"}`
	rolled := `drover_rollouts_total{result="succeeded",service="` + service + `"}`
	last, body := scrapeUntil("the rollout reported", func(s samples) bool { return s.sum(gate) == 1 && s.sum(rolled) == 1 })
	var want int64
	for _, f := range []testenv.File{images.Kernel, images.Initrd} {
		info, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		want += info.Size()
	}
	if got := last.sum("drover_image_download_bytes_total"); got != float64(want) {
		t.Errorf("drover_image_download_bytes_total = %v, want %d (the kernel and the initrd)", got, want)
	}
	for _, zero := range []string{"drover_image_download_errors_total", "drover_git_fetch_errors_total", `drover_pass_duration_seconds_count{result="error"}`} {
		if n := last.sum(zero); n != 0 {
			t.Errorf("%s = %v, want 0", zero, n)
		}
	}
	t.Logf("gate passed after %.2fs", last.sum(`drover_health_gate_wait_seconds_sum{result="passed",service="`+service+`"}`))
	checkMetrics(body)
	p.stop(t)
}

// samples are a scrape's values by series, as written: `name{labels}`.
type samples map[string]float64

// sum adds the values of the series named key, which may include labels: a name
// alone sums every series of it.
func (s samples) sum(key string) float64 {
	var total float64
	for series, v := range s {
		if series == key || strings.HasPrefix(series, key+"{") {
			total += v
		}
	}
	return total
}

// parseSamples reads the text exposition format's sample lines (promtool checks the
// rest).
func parseSamples(t *testing.T, body string) samples {
	t.Helper()
	out := samples{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("sample line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// grepDrover is the scrape's drover_ lines, for failure messages.
func grepDrover(body string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "drover_") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

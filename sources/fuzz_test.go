package sources

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// fuzzSeeds are the shapes of input that once cost the most. They are scaled to tens of
// KiB, so that the fuzzer can mutate and minimize them within a short -fuzztime;
// largeInputs has them at full size.
func fuzzSeeds() []string {
	levels := []string{"&l0 {drain: 1s}"}
	for i := 1; i <= 8; i++ {
		levels = append(levels, fmt.Sprintf("&l%d {<<: [%s]}", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", ")))
	}
	return []string{
		"", "services: []\n", fullFleet, minimal(""), "services: [\n", "a: &a [*a]\n",
		"services:\n  - <<: &x {<<: *x}\n", "services: [{name: web, image: {kernel: *k}}]\n",
		"services:\n - name: w\n   update: {<<: [{drain: 1s}, {drain: 2s}]}\n",
		"\xff\xfe", "---\n---\n", "services: !!binary aGVsbG8=\n",
		svc("replicas: 3", "update: {strategy: rolling, max_surge: 0, max_unavailable: 4}"),
		svc("update: {strategy: canary, canary: 2, max_surge: 1}"),
		svc(`chaos: {interval: 10m, window: "23:00-01:00"}`),
		svc(`chaos: {<<: {interval: 1s}, window: 00:00-00:00}`),
		svc("share_consul_service: true", "update: {drain: 100000h}"),
		svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\x01\u0000\uFFFEb"}`),
		svc("update: {<<: [" + strings.Join(levels, ", ") + "]}"),
		aliasBombOf(16<<10, 1000),
		svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "` + strings.Repeat("q", 16<<10) + `"}`),
		"services: " + strings.Repeat("[", 12000) + strings.Repeat("]", 12000) + "\n",
		manyServices(MaxServices + 1),
	}
}

// largeInputs are the attacks at the sizes the limits allow, and just over them.
func largeInputs() []string {
	bomb, _ := aliasBomb()
	huge := strings.Repeat("q", MaxFleetFileBytes-1000)
	return []string{
		bomb,
		svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "` + huge + `"}`),
		svc("version: " + huge),
		"services: [\"" + strings.Repeat("x", MaxFleetFileBytes) + "\"]\n",
		"services: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n",
		"services: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n",
		"services: [" + strings.Repeat("{a: 1}, ", MaxFleetFileBytes/9) + "]\n",
		"services: [" + strings.Repeat("{}, ", MaxFleetFileBytes/5) + "]\n",
		"services:\n  - {" + strings.Repeat("k: 1, ", MaxFleetFileBytes/7) + "k: 1}\n",
		manyServices(MaxServices),
		manyServices(MaxServices * 3),
	}
}

// aliasBombOf is a string of size bytes and n aliases to it.
func aliasBombOf(size, n int) string {
	return `x: &s "` + strings.Repeat("a", size) + "\"\nservices: [" + strings.Repeat("*s, ", n) + "]\n"
}

// manyServices is a fleet of n valid services sharing their blocks through aliases.
func manyServices(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "x: [&i {kernel: {url: \"file:///k\", sha256: %q}}, &c {tcp: true}]\nservices:\n", hexA)
	for i := range n {
		fmt.Fprintf(&b, "  - {name: s%d, version: v, port: 1, image: *i, check: *c}\n", i)
	}
	return b.String()
}

// FuzzParse: whatever the input, Parse returns without panicking, allocates a bounded
// amount, reports a bounded error with positions, and what it accepts is within every
// bound and parses again, written back as YAML, to the same fleet.
// `make test` runs it: go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 20s ./sources
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(checkParse)
}

// The attacks at full size get the fuzz target's checks as a plain test.
func TestParseLargeInputs(t *testing.T) {
	for i, input := range largeInputs() {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkParse(t, input) })
	}
}

func checkParse(t *testing.T, input string) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fleet, err := Parse("fuzz.yaml", []byte(input))
	runtime.ReadMemStats(&after)
	// yaml.v3 allocates a few hundred bytes per node, in all, of a file at most 1 MiB long.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
		t.Fatalf("Parse of %d bytes allocated %d MiB", len(input), alloc>>20)
	}
	if err == nil {
		if fleet == nil {
			t.Fatal("nil fleet without error")
		}
		checkBounds(t, fleet)
		again, err := Parse("again.yaml", render(t, fleet))
		if err != nil {
			t.Fatalf("a parsed fleet, written back, does not parse: %.1000v", err)
		}
		if a, b := withoutPos(fleet), withoutPos(again); !reflect.DeepEqual(a, b) {
			t.Fatalf("a parsed fleet, written back, parses differently:\n got %.2000s\nwant %.2000s", dump(b), dump(a))
		}
		return
	}
	if fleet != nil {
		t.Fatal("fleet returned with an error")
	}
	if n := len(err.Error()); n >= 64<<10 {
		t.Fatalf("error text of %d bytes for %d bytes of input", n, len(input))
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error is not a non-empty Errors: %.1000v", err)
	}
	if len(errs) > maxErrors+1 {
		t.Fatalf("%d errors, want at most %d and a count", len(errs), maxErrors)
	}
	for _, e := range errs {
		if e.Pos.File != "fuzz.yaml" || e.Pos.Line < 1 || e.Pos.Col < 1 || e.Msg == "" {
			t.Fatalf("error without a position or message: %#v", e)
		}
	}
}

// checkBounds asserts that an accepted fleet holds only values within limits.go.
func checkBounds(t *testing.T, f *Fleet) {
	t.Helper()
	if len(f.Services) > MaxServices {
		t.Fatalf("%d services", len(f.Services))
	}
	for _, s := range f.Services {
		bad := func(what string, v any) { t.Fatalf("service %s: %s = %v is out of bounds", s.Name, what, v) }
		switch {
		case !nameRE.MatchString(s.Name):
			bad("name", s.Name)
		case s.Replicas < 0 || s.Replicas > MaxReplicas:
			bad("replicas", s.Replicas)
		case s.CPUs < 1 || s.CPUs > MaxCPUs:
			bad("cpus", s.CPUs)
		case s.MemoryMiB < MinMemoryMiB || s.MemoryMiB > MaxMemoryMiB:
			bad("memory", s.MemoryMiB)
		case s.Port < 1 || s.Port > 65535:
			bad("port", s.Port)
		case s.Check.Interval <= 0 || s.Check.Interval > MaxCheckInterval || s.Check.Timeout <= 0 || s.Check.Timeout > s.Check.Interval:
			bad("check", s.Check)
		case s.Update.Drain < 0 || s.Update.Drain > MaxDrain:
			bad("drain", s.Update.Drain)
		case s.Update.ShutdownTimeout < 0 || s.Update.ShutdownTimeout > MaxShutdownTimeout:
			bad("shutdown_timeout", s.Update.ShutdownTimeout)
		case s.Update.HealthyDeadline <= 0 || s.Update.HealthyDeadline > MaxHealthyDeadline:
			bad("healthy_deadline", s.Update.HealthyDeadline)
		case s.Update.MinHealthyTime < 0 || s.Update.MinHealthyTime >= s.Update.HealthyDeadline:
			bad("min_healthy_time", s.Update.MinHealthyTime)
		case s.Update.MaxSurge > MaxReplicas || s.Update.MaxUnavailable > MaxReplicas || s.Update.Canary > MaxReplicas:
			bad("update counts", s.Update)
		case s.Chaos != nil && (s.Chaos.Interval <= 0 || s.Chaos.Interval > MaxChaosInterval):
			bad("chaos.interval", s.Chaos.Interval)
		}
		texts := map[string]struct {
			v   string
			max int
		}{
			"version": {s.Version, MaxVersionBytes}, "cmdline": {s.Image.Cmdline, MaxCmdlineBytes},
			"check.http": {s.Check.HTTP, MaxCheckPathBytes}, "bridge": {s.Network.Bridge, MaxBridgeBytes},
			"network": {s.Network.Network, MaxNetworkBytes},
		}
		for _, a := range []*Artifact{s.Image.Kernel, s.Image.Initrd, s.Image.Disk} {
			if a != nil {
				texts["url "+a.URL] = struct {
					v   string
					max int
				}{a.URL, MaxURLBytes}
			}
		}
		for what, x := range texts {
			if _, _, unprint := unprintable(x.v); unprint || len(x.v) > x.max || !utf8.ValidString(x.v) {
				bad(what, excerpt(x.v))
			}
		}
	}
}

// render writes a fleet back as a fleet file, every field explicit.
func render(t *testing.T, f *Fleet) []byte {
	t.Helper()
	artifact := func(a *Artifact) map[string]any {
		return map[string]any{"url": a.URL, "sha256": a.SHA256}
	}
	var services []any
	for _, s := range f.Services {
		image := map[string]any{}
		if s.Image.Kernel != nil {
			image["kernel"] = artifact(s.Image.Kernel)
		}
		if s.Image.Initrd != nil {
			image["initrd"] = artifact(s.Image.Initrd)
		}
		if s.Image.Disk != nil {
			image["disk"] = artifact(s.Image.Disk)
		}
		if s.Image.Cmdline != "" {
			image["cmdline"] = s.Image.Cmdline
		}
		network := map[string]any{"mode": s.Network.Mode}
		if s.Network.Bridge != "" {
			network["bridge"] = s.Network.Bridge
		}
		if s.Network.Network != "" {
			network["network"] = s.Network.Network
		}
		check := map[string]any{"interval": s.Check.Interval.String(), "timeout": s.Check.Timeout.String()}
		if s.Check.TCP {
			check["tcp"] = true
		} else {
			check["http"] = s.Check.HTTP
		}
		u := s.Update
		update := map[string]any{
			"strategy": u.Strategy, "min_healthy_time": u.MinHealthyTime.String(),
			"healthy_deadline": u.HealthyDeadline.String(), "drain": u.Drain.String(),
			"shutdown_timeout": u.ShutdownTimeout.String(), "auto_rollback": u.AutoRollback,
		}
		switch u.Strategy {
		case StrategyRolling:
			update["max_surge"], update["max_unavailable"] = u.MaxSurge, u.MaxUnavailable
		case StrategyCanary:
			update["canary"] = u.Canary
		}
		svc := map[string]any{
			"name": s.Name, "version": s.Version, "replicas": s.Replicas, "cpus": s.CPUs,
			"memory": fmt.Sprintf("%dMiB", s.MemoryMiB), "image": image, "network": network,
			"port": s.Port, "check": check, "update": update, "share_consul_service": s.ShareConsulService,
		}
		if s.Chaos != nil {
			chaos := map[string]any{"interval": s.Chaos.Interval.String()}
			if s.Chaos.Window != nil {
				chaos["window"] = s.Chaos.Window.String()
			}
			svc["chaos"] = chaos
		}
		services = append(services, svc)
	}
	if services == nil {
		services = []any{}
	}
	out, err := yaml.Marshal(map[string]any{"services": services})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return out
}

func withoutPos(f *Fleet) *Fleet {
	out := &Fleet{Services: make([]Service, len(f.Services))}
	for i, s := range f.Services {
		s.Pos = Pos{}
		out.Services[i] = s
	}
	return out
}

package sources

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/drover-dev/drover/testenv"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("fleet.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	// Compiling checks the schema against the draft 2020-12 meta-schema.
	sch, err := c.Compile("fleet.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// schemaVerdict validates a fleet file against the schema the way an editor does: the
// YAML (aliases and merge keys resolved) read as JSON.
func schemaVerdict(t *testing.T, sch *jsonschema.Schema, data string) error {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(data), &v); err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("fleet as JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

func verdict(err error) string {
	if err == nil {
		return "valid"
	}
	return "invalid"
}

// userDataRE finds the cloud_init.user_data files a fleet names.
var userDataRE = regexp.MustCompile(`(?m)user_data:\s*["']?([^\s"'#,}]+)`)

// parseInRepo parses data as the fleet file of a repository that also holds every
// user-data file it names (a valid #cloud-config): the schema cannot see files, so the
// parser is asked about the fleet file alone.
func parseInRepo(name, data string) error {
	fsys := fstest.MapFS{"fleet.yaml": {Data: []byte(data)}}
	for _, m := range userDataRE.FindAllStringSubmatch(data, -1) {
		fsys[path.Clean(m[1])] = &fstest.MapFile{Data: []byte("#cloud-config\nruncmd: []\n")}
	}
	_, err := Load(fsys, "fleet.yaml")
	if err != nil {
		err = fmt.Errorf("%s: %w", name, err)
	}
	return err
}

// agree checks that the parser and the schema both accept or both refuse data.
func agree(t *testing.T, sch *jsonschema.Schema, name, data string) (valid bool) {
	t.Helper()
	perr := parseInRepo(name, data)
	serr := schemaVerdict(t, sch, data)
	if (perr == nil) != (serr == nil) {
		t.Errorf("%s: parser says %s, schema says %s\nparser: %v\nschema: %v\n%s", name, verdict(perr), verdict(serr), perr, serr, data)
	}
	return perr == nil
}

// readmeFleets are the ```yaml blocks with a services list in README.md and in the
// README text waiting to be merged (docs-*.md). The README's "<64 hex>" placeholder
// stands for a digest.
func readmeFleets(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../docs-*.md")
	files = append([]string{"../README.md"}, files...)
	block := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range block.FindAllStringSubmatch(string(data), -1) {
			if strings.Contains(m[1], "services:") {
				out[filepath.Base(f)+"#"+string(rune('1'+i))] = strings.ReplaceAll(m[1], "<64 hex>", hexC)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no fleet found in README.md")
	}
	return out
}

// Every fleet the README shows: the schema agrees with the parser, and each fleet the
// parser takes validates. The README's reference block lists alternatives side by side
// (bridge with mode user, max_surge with blue-green), which both refuse.
func TestSchemaREADMEFleets(t *testing.T) {
	sch := compileSchema(t)
	valid := 0
	for name, data := range readmeFleets(t) {
		if agree(t, sch, name, data) {
			valid++
		}
	}
	if valid == 0 {
		t.Error("no fleet in the README is valid: show at least one complete example")
	}
	t.Logf("%d of %d README fleets are valid", valid, len(readmeFleets(t)))
}

// Required-ness, and the fields one requires of another, agree: each field of two
// complete valid fleets is left out in turn, and the parser and the schema reach the
// same verdict on what is left.
func TestSchemaAgreesOnEachFieldLeftOut(t *testing.T) {
	sch := compileSchema(t)
	for _, base := range []string{fullFleet, minimal("")} {
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(base), &doc); err != nil {
			t.Fatal(err)
		}
		for i, svc := range doc["services"].([]any) {
			forEachField(svc.(map[string]any), "", func(path string, drop func() (restore func())) {
				restore := drop()
				defer restore()
				data, err := yaml.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				agree(t, sch, fmt.Sprintf("services[%d] without %s", i, path), string(data))
			})
		}
	}
}

// forEachField calls fn for each field under m, with a function that removes it and
// returns how to put it back.
func forEachField(m map[string]any, prefix string, fn func(path string, drop func() (restore func()))) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		fn(prefix+k, func() func() {
			delete(m, k)
			return func() { m[k] = v }
		})
		if sub, ok := v.(map[string]any); ok {
			forEachField(sub, prefix+k+".", fn)
		}
	}
}

// The fleets the tests deploy validate.
func TestSchemaTestFleets(t *testing.T) {
	sch := compileSchema(t)
	img := testenv.GuestImages{
		Kernel:          testenv.File{Path: "/srv/images/vmlinuz", SHA256: hexA},
		Initrd:          testenv.File{Path: "/srv/images/guest.cpio.gz", SHA256: hexB},
		UnhealthyInitrd: testenv.File{Path: "/srv/images/unhealthy.cpio.gz", SHA256: hexC},
	}
	noRollback := false
	fleets := map[string]string{
		"fullFleet":    fullFleet,
		"minimal":      minimal(""),
		"empty":        img.FleetYAML(),
		"blue-green":   img.FleetYAML(testenv.Service{Name: "web", Version: "1", Replicas: 2}),
		"rolling":      img.FleetYAML(testenv.Service{Name: "web", Version: "2", Replicas: 3, Strategy: "rolling", MaxSurge: 1}),
		"canary":       img.FleetYAML(testenv.Service{Name: "web", Version: "3", Replicas: 2, Strategy: "canary", Canary: 1, Chaos: "interval: 10m\nwindow: \"02:00-04:00\""}),
		"unhealthy":    img.FleetYAML(testenv.Service{Name: "web", Version: "4", Unhealthy: true, HealthyDeadline: 10 * time.Second, AutoRollback: &noRollback}),
		"two":          img.FleetYAML(testenv.Service{Name: "a", Version: "1"}, testenv.Service{Name: "b", Version: "1", Replicas: 0}),
		"merge keys":   "defaults: &d\n  port: 80\n" + strings.Replace(minimal(""), "    port: 80\n", "    <<: {port: 80}\n", 1),
		"anchor+alias": strings.Replace(minimal(""), "check: {http: /}", "check: &c {http: /}", 1) + "  - name: api\n    version: v1\n    image: {kernel: {url: \"file:///k\", sha256: \"" + hexA + "\"}}\n    port: 81\n    check: *c\n",
	}
	for name, data := range fleets {
		if name == "merge keys" {
			// An unknown top-level key (the anchor's home) is refused by both.
			if agree(t, sch, name, data) {
				t.Errorf("%s: want invalid (unknown top-level field)", name)
			}
			data = strings.Replace(data, "defaults: &d\n  port: 80\n", "", 1)
		}
		if !agree(t, sch, name, data) {
			t.Errorf("%s: want valid", name)
		}
		if err := schemaVerdict(t, sch, data); err != nil {
			t.Errorf("%s: schema refuses a valid test fleet: %v\n%s", name, err, data)
		}
	}
}

// Inputs at and around every bound, enum and pattern: the parser and the schema reach
// the same verdict, and it is the one wanted.
func TestSchemaAgreesOnInputs(t *testing.T) {
	sch := compileSchema(t)
	const ok, bad = true, false
	tests := []struct {
		name  string
		input string
		want  bool
	}{
		{"minimal", svc(), ok},
		{"unknown top-level field", minimal("colour: blue\n"), bad},
		{"unknown service field", svc("colour: blue"), bad},
		{"unknown image field", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, boot: x}`), bad},
		{"unknown artifact field", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `", size: 1}}`), bad},
		{"unknown network field", svc("network: {mode: user, vlan: 3}"), bad},
		{"unknown check field", svc("check: {http: /, grpc: true}"), bad},
		{"unknown update field", svc("update: {strategy: rolling, batch: 2}"), bad},
		{"unknown chaos field", svc("chaos: {interval: 1h, victims: 2}"), bad},
		{"services not a list", "services: {}\n", bad},
		{"no services", "{}\n", bad},
		{"empty services", "services: []\n", ok},
		{"name missing", strings.Replace(svc(), "  - name: web\n    version", "  - version", 1), bad},
		{"name upper case", svc("name: Web"), bad},
		{"name 31 chars", svc("name: a" + strings.Repeat("b", 30)), ok},
		{"name 32 chars", svc("name: a" + strings.Repeat("b", 31)), bad},
		{"name number", svc("name: 7"), bad},
		{"version number", svc("version: 1.10"), ok},
		{"version bool", svc("version: true"), ok},
		{"version empty", svc(`version: ""`), bad},
		{"version null", svc("version:"), bad},
		{"version 128", svc("version: " + strings.Repeat("v", 128)), ok},
		{"version 129", svc("version: " + strings.Repeat("v", 129)), bad},
		{"version with a tab", svc(`version: "v\t1"`), bad},
		{"version with NBSP", svc("version: \"v\u00a01\""), bad},
		{"version unicode", svc(`version: "été-1"`), ok},
		{"replicas -1", svc("replicas: -1"), bad},
		{"replicas 0", svc("replicas: 0"), ok},
		{"replicas 1000", svc("replicas: 1000"), ok},
		{"replicas 1001", svc("replicas: 1001"), bad},
		{"replicas string", svc(`replicas: "2"`), bad},
		{"cpus 0", svc("cpus: 0"), bad},
		{"cpus 256", svc("cpus: 256"), ok},
		{"cpus 257", svc("cpus: 257"), bad},
		{"memory 15MiB", svc("memory: 15MiB"), bad},
		{"memory 16MiB", svc("memory: 16MiB"), ok},
		{"memory 0016MiB", svc("memory: 0016MiB"), ok},
		{"memory 99MiB", svc("memory: 99MiB"), ok},
		{"memory 1048576MiB", svc("memory: 1048576MiB"), ok},
		{"memory 1048577MiB", svc("memory: 1048577MiB"), bad},
		{"memory 1047999MiB", svc("memory: 1047999MiB"), ok},
		{"memory 1GiB", svc("memory: 1GiB"), ok},
		{"memory 1024GiB", svc("memory: 1024GiB"), ok},
		{"memory 1025GiB", svc("memory: 1025GiB"), bad},
		{"memory 0GiB", svc("memory: 0GiB"), bad},
		{"memory lower case unit", svc("memory: 256mib"), bad},
		{"memory MB", svc("memory: 256MB"), bad},
		{"memory number", svc("memory: 256"), bad},
		{"port 0", svc("port: 0"), bad},
		{"port 65535", svc("port: 65535"), ok},
		{"port 65536", svc("port: 65536"), bad},
		{"port missing", strings.Replace(svc(), "    port: 80\n", "", 1), bad},
		{"image missing", strings.Replace(strings.Replace(svc(), "    image:\n", "", 1), `      kernel: {url: "file:///k", sha256: "`+hexA+`"}`+"\n", "", 1), bad},
		{"image empty", svc("image: {}"), bad},
		{"disk only", svc(`image: {disk: {url: "https://h/d.qcow2", sha256: "` + hexA + `"}}`), ok},
		{"initrd without kernel", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, initrd: {url: "file:///i", sha256: "` + hexA + `"}}`), bad},
		{"cmdline without kernel", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, cmdline: quiet}`), bad},
		{"cmdline with tab", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\tb"}`), bad},
		{"cmdline 2048", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "` + strings.Repeat("q", 2048) + `"}`), ok},
		{"cmdline 2049", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "` + strings.Repeat("q", 2049) + `"}`), bad},
		{"sha256 upper case", svc(`image: {kernel: {url: "file:///k", sha256: "` + strings.ToUpper(hexA) + `"}}`), ok},
		{"sha256 short", svc(`image: {kernel: {url: "file:///k", sha256: "abc"}}`), bad},
		{"sha256 missing", svc(`image: {kernel: {url: "file:///k"}}`), bad},
		{"url missing", svc(`image: {kernel: {sha256: "` + hexA + `"}}`), bad},
		{"url ftp", svc(`image: {kernel: {url: "ftp://h/k", sha256: "` + hexA + `"}}`), bad},
		{"url file with host", svc(`image: {kernel: {url: "file://h/k", sha256: "` + hexA + `"}}`), bad},
		{"url file relative", svc(`image: {kernel: {url: "file:k", sha256: "` + hexA + `"}}`), bad},
		{"url file one slash", svc(`image: {kernel: {url: "file:/srv/k", sha256: "` + hexA + `"}}`), ok},
		{"url http without host", svc(`image: {kernel: {url: "http:///k", sha256: "` + hexA + `"}}`), bad},
		{"url https with port", svc(`image: {kernel: {url: "https://images.lan:8443/k?x=1", sha256: "` + hexA + `"}}`), ok},
		{"url with space", svc(`image: {kernel: {url: "file:///k k", sha256: "` + hexA + `"}}`), bad},
		{"url 2049 bytes", svc(`image: {kernel: {url: "file:///` + strings.Repeat("k", 2041) + `", sha256: "` + hexA + `"}}`), bad},
		{"url 2048 bytes", svc(`image: {kernel: {url: "file:///` + strings.Repeat("k", 2040) + `", sha256: "` + hexA + `"}}`), ok},
		{"network mode bad", svc("network: {mode: nat}"), bad},
		{"network mode user", svc("network: {mode: user}"), ok},
		{"network empty", svc("network: {}"), ok},
		{"bridge", svc("network: {mode: bridge, bridge: br0}"), ok},
		{"bridge missing", svc("network: {mode: bridge}"), bad},
		{"bridge empty", svc(`network: {mode: bridge, bridge: ""}`), bad},
		{"bridge with mode user", svc("network: {mode: user, bridge: br0}"), bad},
		{"bridge without mode", svc("network: {bridge: br0}"), bad},
		{"bridge 15 bytes", svc("network: {mode: bridge, bridge: br0123456789abc}"), ok},
		{"bridge 16 bytes", svc("network: {mode: bridge, bridge: br0123456789abcd}"), bad},
		{"bridge with slash", svc("network: {mode: bridge, bridge: ../eth0}"), bad},
		{"network mode network", svc("network: {mode: network, network: default}"), ok},
		{"network missing", svc("network: {mode: network}"), bad},
		{"network with mode bridge", svc("network: {mode: bridge, bridge: br0, network: default}"), bad},
		{"network 64 bytes", svc("network: {mode: network, network: " + strings.Repeat("n", 64) + "}"), ok},
		{"network 65 bytes", svc("network: {mode: network, network: " + strings.Repeat("n", 65) + "}"), bad},
		{"check missing", strings.Replace(svc(), "    check: {http: /}\n", "", 1), bad},
		{"check tcp", svc("check: {tcp: true}"), ok},
		{"check tcp false alone", svc("check: {tcp: false}"), bad},
		{"check http and tcp false", svc("check: {http: /, tcp: false}"), ok},
		{"check http and tcp", svc("check: {http: /, tcp: true}"), bad},
		{"check empty", svc("check: {}"), bad},
		{"check http relative", svc("check: {http: healthz}"), bad},
		{"check http query", svc(`check: {http: "/healthz?full=1"}`), ok},
		{"check http fragment", svc(`check: {http: "/h#x"}`), bad},
		{"check http 1024", svc("check: {http: /" + strings.Repeat("h", 1023) + "}"), ok},
		{"check http 1025", svc("check: {http: /" + strings.Repeat("h", 1024) + "}"), bad},
		{"check interval", svc("check: {http: /, interval: 1m30s, timeout: 500ms}"), ok},
		{"check interval 0s", svc("check: {http: /, interval: 0s}"), bad},
		{"check interval 0", svc("check: {http: /, interval: 0}"), bad},
		{"check interval no unit", svc("check: {http: /, interval: 5}"), bad},
		{"check interval negative", svc("check: {http: /, interval: -5s}"), bad},
		{"check interval fraction", svc("check: {http: /, interval: 0.5s, timeout: 0.25s}"), ok},
		{"check timeout 0s", svc("check: {http: /, timeout: 0s}"), bad},
		{"strategy bad", svc("update: {strategy: big-bang}"), bad},
		{"strategy rolling", svc("update: {strategy: rolling, max_surge: 0, max_unavailable: 1}"), ok},
		{"rolling both 0", svc("update: {strategy: rolling, max_surge: 0, max_unavailable: 0}"), bad},
		{"rolling surge 0 alone", svc("update: {strategy: rolling, max_surge: 0}"), bad},
		{"rolling surge 1000", svc("update: {strategy: rolling, max_surge: 1000}"), ok},
		{"rolling surge 1001", svc("update: {strategy: rolling, max_surge: 1001}"), bad},
		{"max_surge with blue-green", svc("update: {strategy: blue-green, max_surge: 1}"), bad},
		{"max_surge without strategy", svc("update: {max_surge: 1}"), bad},
		{"max_unavailable with canary", svc("update: {strategy: canary, max_unavailable: 1}"), bad},
		{"canary", svc("replicas: 3", "update: {strategy: canary, canary: 2}"), ok},
		{"canary 0", svc("update: {strategy: canary, canary: 0}"), bad},
		{"canary with rolling", svc("update: {strategy: rolling, canary: 1}"), bad},
		{"durations", svc("update: {min_healthy_time: 3s, healthy_deadline: 2m, drain: 0, shutdown_timeout: 1h}"), ok},
		{"drain 0s", svc("update: {drain: 0s}"), ok},
		{"drain negative", svc("update: {drain: -1s}"), bad},
		{"drain text", svc("update: {drain: soon}"), bad},
		{"healthy_deadline 0", svc("update: {healthy_deadline: 0s}"), bad},
		{"auto_rollback string", svc(`update: {auto_rollback: "no"}`), bad},
		{"chaos", svc("chaos: {interval: 24h, window: \"02:00-04:00\"}"), ok},
		{"chaos wraps midnight", svc("chaos: {interval: 24h, window: \"22:00-02:00\"}"), ok},
		{"chaos without interval", svc("chaos: {window: \"02:00-04:00\"}"), bad},
		{"chaos interval 0s", svc("chaos: {interval: 0s}"), bad},
		{"chaos window 24:00", svc("chaos: {interval: 1h, window: \"23:00-24:00\"}"), bad},
		{"chaos window short", svc("chaos: {interval: 1h, window: \"2-4\"}"), bad},
		{"share_consul_service", svc("share_consul_service: true"), ok},
		{"share_consul_service string", svc(`share_consul_service: "yes"`), bad},

		// Issue 8's fields.
		{"firmware uefi", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, firmware: uefi}`), ok},
		{"firmware bad", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, firmware: coreboot}`), bad},
		{"disk_size", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, disk_size: 10GiB}`), ok},
		{"disk_size unitless", svc(`image: {disk: {url: "https://h/d", sha256: "` + hexA + `"}, disk_size: 10}`), bad},
		{"cloud_init", svc("cloud_init: {user_data: cloud/web.yaml}"), ok},
		{"cloud_init absolute", svc("cloud_init: {user_data: /etc/passwd}"), bad},
		{"cloud_init dot dot", svc("cloud_init: {user_data: ../secrets.yaml}"), bad},
		{"cloud_init unknown", svc("cloud_init: {user_data: u.yaml, vendor_data: v.yaml}"), bad},
		{"static range", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.10-198.18.0.99, prefix: 24, gateway: 198.18.0.1, dns: [198.18.0.1]}"), ok},
		{"static cidr", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.0/24, prefix: 24}"), ok},
		{"addresses malformed", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.300-198.18.0.9, prefix: 24}"), bad},
		{"prefix 33", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.0/24, prefix: 33}"), bad},
		{"prefix 0", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.10-198.18.0.20, prefix: 0}"), bad},
		{"four dns servers", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.0/24, prefix: 24, dns: [198.18.0.1, 198.18.0.2, 198.18.0.3, 198.18.0.4]}"), bad},
		{"gateway not an address", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.0/24, prefix: 24, gateway: router}"), bad},
		{"dns not a list", svc("network: {mode: bridge, bridge: br0, addresses: 198.18.0.0/24, prefix: 24, dns: 198.18.0.1}"), bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := schemaVerdict(t, sch, tt.input); (err == nil) != tt.want {
				t.Errorf("schema: got %s, want %s: %v\n%s", verdict(err), verdict(boolErr(tt.want)), err, tt.input)
			}
			if err := parseInRepo("f.yaml", tt.input); (err == nil) != tt.want {
				t.Errorf("parser: got %s, want %s: %v\n%s", verdict(err), verdict(boolErr(tt.want)), err, tt.input)
			}
		})
	}
}

func boolErr(ok bool) error {
	if ok {
		return nil
	}
	return os.ErrInvalid
}

// The parser and the schema know the same fields, in both directions. The parser's
// fields of each block are read from its own refusal of an unknown key there ("unknown
// field …; allowed: a, b"), so nothing here lists them by hand; the schema's are its
// properties. Every block of the schema also refuses unknown keys.
func TestSchemaAgreesWithParser(t *testing.T) {
	sch := compileSchema(t)
	var root map[string]any
	if err := json.Unmarshal(Schema(), &root); err != nil {
		t.Fatal(err)
	}
	defs, _ := root["$defs"].(map[string]any)
	resolve := func(s map[string]any) map[string]any {
		for i := 0; i < 10; i++ {
			ref, ok := s["$ref"].(string)
			if !ok {
				break
			}
			s, _ = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
		}
		return s
	}
	// walk compares the block at path (schema node s) and recurses into the
	// sub-blocks both know.
	var walk func(path []string, s map[string]any)
	walk = func(path []string, s map[string]any) {
		s = resolve(s)
		name := strings.Join(path, ".")
		if name == "" {
			name = "(top)"
		}
		if s["additionalProperties"] != false {
			t.Errorf("schema block %s does not set additionalProperties: false: an unknown field would pass", name)
		}
		props, _ := s["properties"].(map[string]any)
		probe, parserFields := probeParser(t, path)
		if err := schemaVerdict(t, sch, probe); err == nil {
			t.Errorf("schema accepts an unknown field in %s:\n%s", name, probe)
		}
		for _, f := range parserFields {
			if _, ok := props[f]; !ok {
				t.Errorf("the parser knows %s, the schema does not", join(path, f))
			}
		}
		for _, f := range slices.Sorted(maps.Keys(props)) {
			full := join(path, f)
			if !slices.Contains(parserFields, f) {
				t.Errorf("the schema has %s, the parser does not know it", full)
				continue
			}
			sub := resolve(props[f].(map[string]any))
			switch {
			case sub["type"] == "array" && sub["items"] != nil:
				if items := resolve(sub["items"].(map[string]any)); items["type"] == "object" {
					walk(append(slices.Clone(path), f+"[]"), items)
				}
			case sub["type"] == "object":
				walk(append(slices.Clone(path), f), sub)
			}
		}
	}
	walk(nil, root)
}

func join(path []string, f string) string {
	return strings.Join(append(slices.Clone(path), f), ".")
}

var allowedRE = regexp.MustCompile(`unknown field "[^"]*zz_probe"; allowed(?: in [^:]+)?: (.*)$`)

// probeParser parses the smallest valid fleet with an unknown key added in the block at
// path ("services[]", "image", "kernel" …) and returns that fleet and the fields the
// parser says the block allows.
func probeParser(t *testing.T, path []string) (string, []string) {
	t.Helper()
	fleet := map[string]any{"services": []any{map[string]any{
		"name": "web", "version": "v1", "port": 80,
		"image": map[string]any{"kernel": map[string]any{"url": "file:///k", "sha256": hexA}},
		"check": map[string]any{"http": "/"},
	}}}
	var block map[string]any = fleet
	for _, seg := range path {
		key, list := strings.CutSuffix(seg, "[]")
		if list {
			block = block[key].([]any)[0].(map[string]any)
			continue
		}
		next, ok := block[key].(map[string]any)
		if !ok {
			next = map[string]any{}
			block[key] = next
		}
		block = next
	}
	block["zz_probe"] = 1
	data, err := yaml.Marshal(fleet)
	if err != nil {
		t.Fatal(err)
	}
	_, perr := Parse("probe.yaml", data)
	if perr == nil {
		t.Fatalf("the parser accepts an unknown field at %v:\n%s", path, data)
	}
	for _, line := range strings.Split(perr.Error(), "\n") {
		if m := allowedRE.FindStringSubmatch(line); m != nil {
			return string(data), strings.Split(m[1], ", ")
		}
	}
	t.Fatalf("no \"unknown field … allowed: …\" error for the probe at %v: %v\n%s", path, perr, data)
	return "", nil
}

// Editors run the schema's patterns as ECMA-262 regular expressions with the u flag
// (yaml-language-server does), not as Go's: each must compile there, and mean the same
// on the bounds of memory and on printable text. Node.js is the ECMA-262 engine at hand.
func TestSchemaPatternsAreECMA262(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Unavailable(t, "node not installed (Debian package nodejs)")
	}
	script := `
const s = JSON.parse(require("fs").readFileSync(0, "utf8"));
const pats = [];
(function walk(o) {
  if (Array.isArray(o)) { o.forEach(walk); return; }
  if (o && typeof o === "object") for (const [k, v] of Object.entries(o)) { if (k === "pattern") pats.push(v); else walk(v); }
})(s);
for (const p of pats) { try { new RegExp(p, "u"); } catch (e) { console.log("does not compile: " + p + ": " + e.message); } }
const mem = new RegExp(s.$defs.service.properties.memory.pattern, "u");
const printable = new RegExp(s.$defs.printable.pattern, "u");
const got = [mem.test("16MiB"), mem.test("15MiB"), mem.test("1024GiB"), mem.test("1025GiB"), printable.test("été 1"), printable.test("a\tb"), printable.test("a\u00a0b")];
console.log(pats.length + " patterns; " + got.join(" "));
`
	cmd := exec.Command(node, "-e", script)
	cmd.Stdin = bytes.NewReader(Schema())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if strings.Contains(got, "does not compile") || !strings.HasSuffix(got, "patterns; true false true false true false false") {
		t.Errorf("ECMA-262 reading of the schema's patterns:\n%s\nwant every pattern compiling, then: true false true false true false false", got)
	}
}

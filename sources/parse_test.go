package sources

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hexB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	hexC = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

const fullFleet = `services:
  - name: web
    version: "1.4.2"
    replicas: 2
    cpus: 2
    memory: 1GiB
    image:
      kernel: {url: "file:///srv/images/vmlinuz", sha256: "` + hexA + `"}
      initrd: {url: "file:///srv/images/web-1.4.2.cpio.gz", sha256: "` + hexB + `"}
      cmdline: "console=ttyS0 quiet"
      disk:   {url: "https://images.lan/web-1.4.2.qcow2", sha256: "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"}
    network:
      mode: bridge
      bridge: br0
    port: 8080
    check:
      http: /healthz
      interval: 1s
      timeout: 1s
    update:
      strategy: rolling
      max_surge: 2
      max_unavailable: 1
      min_healthy_time: 3s
      healthy_deadline: 2m
      drain: 10s
      shutdown_timeout: 1m
      auto_rollback: false
    chaos:
      interval: 10m
      window: "22:30-02:00"
    share_consul_service: true
  - name: db
    version: 7
    replicas: 0
    memory: 512MiB
    image:
      disk: {url: "http://127.0.0.1:8000/db.qcow2", sha256: "` + hexC + `"}
    network: {mode: network, network: default}
    port: 5432
    check: {tcp: true}
    update: {strategy: canary}
    chaos: {interval: 1h}
`

func TestParseFull(t *testing.T) {
	got, err := Parse("fleet.yaml", []byte(fullFleet))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Fleet{Services: []Service{
		{
			Name: "web", Version: "1.4.2", Replicas: 2, CPUs: 2, MemoryMiB: 1024,
			Image: Image{
				Kernel:  &Artifact{URL: "file:///srv/images/vmlinuz", SHA256: hexA},
				Initrd:  &Artifact{URL: "file:///srv/images/web-1.4.2.cpio.gz", SHA256: hexB},
				Cmdline: "console=ttyS0 quiet",
				Disk:    &Artifact{URL: "https://images.lan/web-1.4.2.qcow2", SHA256: hexC},
			},
			Network: Network{Mode: "bridge", Bridge: "br0"},
			Port:    8080,
			Check:   Check{HTTP: "/healthz", Interval: time.Second, Timeout: time.Second},
			Update: Update{
				Strategy: "rolling", MaxSurge: 2, MaxUnavailable: 1,
				MinHealthyTime: 3 * time.Second, HealthyDeadline: 2 * time.Minute,
				Drain: 10 * time.Second, ShutdownTimeout: time.Minute, AutoRollback: false,
			},
			Chaos:              &Chaos{Interval: 10 * time.Minute, Window: &Window{Start: 22*time.Hour + 30*time.Minute, End: 2 * time.Hour}},
			ShareConsulService: true,
			Pos:                Pos{File: "fleet.yaml", Line: 2, Col: 5},
		},
		{
			Name: "db", Version: "7", Replicas: 0, CPUs: 1, MemoryMiB: 512,
			Image:   Image{Disk: &Artifact{URL: "http://127.0.0.1:8000/db.qcow2", SHA256: hexC}, Firmware: FirmwareBIOS},
			Network: Network{Mode: "network", Network: "default"},
			Port:    5432,
			Check:   Check{TCP: true, Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout},
			Update: Update{
				Strategy: "canary", Canary: 1, HealthyDeadline: 5 * time.Minute,
				Drain: 5 * time.Second, ShutdownTimeout: 30 * time.Second, AutoRollback: true,
			},
			Chaos: &Chaos{Interval: time.Hour},
			Pos:   Pos{File: "fleet.yaml", Line: 33, Col: 5},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %s\nwant %s", dump(got), dump(want))
	}
	if s, ok := got.Service("db"); !ok || s.Port != 5432 {
		t.Errorf("Service(db) = %v, %v; want port 5432, true", s.Port, ok)
	}
}

func dump(f *Fleet) string {
	if f == nil {
		return "<nil>"
	}
	var b strings.Builder
	for _, s := range f.Services {
		fmt.Fprintf(&b, "\n  %+v kernel=%+v initrd=%+v disk=%+v", s, s.Image.Kernel, s.Image.Initrd, s.Image.Disk)
		if s.Chaos != nil {
			fmt.Fprintf(&b, " chaos=%+v window=%v", *s.Chaos, s.Chaos.Window)
		}
	}
	return b.String()
}

// minimal is the smallest valid service; tests append or replace lines of it.
func minimal(extra string) string {
	return `services:
  - name: web
    version: v1
    image:
      kernel: {url: "file:///k", sha256: "` + hexA + `"}
    port: 80
    check: {http: /}
` + extra
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Service
	}{
		{
			name:  "all defaults",
			input: minimal(""),
			want: Service{
				Name: "web", Version: "v1", Replicas: 1, CPUs: 1, MemoryMiB: 256,
				Image:   Image{Kernel: &Artifact{URL: "file:///k", SHA256: hexA}},
				Network: Network{Mode: "user"},
				Port:    80,
				Check:   Check{HTTP: "/", Interval: 5 * time.Second, Timeout: 2 * time.Second},
				Update: Update{
					Strategy: "blue-green", MinHealthyTime: 0, HealthyDeadline: 5 * time.Minute,
					Drain: 5 * time.Second, ShutdownTimeout: 30 * time.Second, AutoRollback: true,
				},
				Pos: Pos{File: "f.yaml", Line: 2, Col: 5},
			},
		},
		{
			// The default timeout would exceed a short interval: it shrinks to the interval.
			name: "short interval caps the default timeout, empty blocks keep defaults",
			input: `services:
  - name: web
    version: v1
    image: {disk: {url: "https://h/d.qcow2", sha256: "` + hexA + `"}}
    port: 80
    check: {tcp: true, interval: 500ms}
    network: {}
    update: {}
`,
			want: Service{
				Name: "web", Version: "v1", Replicas: 1, CPUs: 1, MemoryMiB: 256,
				Image:   Image{Disk: &Artifact{URL: "https://h/d.qcow2", SHA256: hexA}, Firmware: FirmwareBIOS},
				Network: Network{Mode: "user"},
				Port:    80,
				Check:   Check{TCP: true, Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond},
				Update: Update{
					Strategy: "blue-green", HealthyDeadline: 5 * time.Minute,
					Drain: 5 * time.Second, ShutdownTimeout: 30 * time.Second, AutoRollback: true,
				},
				Pos: Pos{File: "f.yaml", Line: 2, Col: 5},
			},
		},
		{
			name: "anchors, aliases and merge keys",
			input: `services:
  - name: web
    version: v1
    image: &img
      kernel: {url: "file:///k", sha256: "` + hexA + `"}
    port: 80
    check: &chk {http: /, interval: 1s, timeout: 1s}
    update: &upd {drain: 0s, auto_rollback: false}
  - name: api
    version: v1
    image: *img
    port: 81
    check: *chk
    update:
      <<: *upd
      drain: 1s
`,
			want: Service{
				Name: "api", Version: "v1", Replicas: 1, CPUs: 1, MemoryMiB: 256,
				Image:   Image{Kernel: &Artifact{URL: "file:///k", SHA256: hexA}},
				Network: Network{Mode: "user"},
				Port:    81,
				Check:   Check{HTTP: "/", Interval: time.Second, Timeout: time.Second},
				Update: Update{
					Strategy: "blue-green", HealthyDeadline: 5 * time.Minute,
					Drain: time.Second, ShutdownTimeout: 30 * time.Second, AutoRollback: false,
				},
				Pos: Pos{File: "f.yaml", Line: 9, Col: 5},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tt.input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := f.Services[len(f.Services)-1]
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("service:\n got %s\nwant %s", dump(&Fleet{Services: []Service{got}}), dump(&Fleet{Services: []Service{tt.want}}))
			}
		})
	}
}

// minimalService is what minimal("") parses to; tests change what they set.
func minimalService(change func(*Service)) Service {
	s := Service{
		Name: "web", Version: "v1", Replicas: 1, CPUs: 1, MemoryMiB: 256,
		Image:   Image{Kernel: &Artifact{URL: "file:///k", SHA256: hexA}},
		Network: Network{Mode: "user"},
		Port:    80,
		Check:   Check{HTTP: "/", Interval: 5 * time.Second, Timeout: 2 * time.Second},
		Update: Update{
			Strategy: "blue-green", HealthyDeadline: 5 * time.Minute,
			Drain: 5 * time.Second, ShutdownTimeout: 30 * time.Second, AutoRollback: true,
		},
		Pos: Pos{File: "f.yaml", Line: 2, Col: 5},
	}
	change(&s)
	return s
}

// Strategy fields and the chaos block: defaults, bounds that are allowed, YAML forms.
func TestParseStrategiesAndChaos(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Service
	}{
		{"rolling defaults", svc("update: {strategy: rolling}"), minimalService(func(s *Service) {
			s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = "rolling", 1, 0
		})},
		{"rolling without surge", svc("replicas: 3", "update: {strategy: rolling, max_surge: 0, max_unavailable: 3}"), minimalService(func(s *Service) {
			s.Replicas = 3
			s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = "rolling", 0, 3
		})},
		{"rolling large surge", svc("replicas: 2", "update: {strategy: rolling, max_surge: 10, max_unavailable: 0}"), minimalService(func(s *Service) {
			s.Replicas = 2
			s.Update.Strategy, s.Update.MaxSurge = "rolling", 10
		})},
		{"rolling with zero replicas keeps any max_unavailable", svc("replicas: 0", "update: {strategy: rolling, max_unavailable: 4}"), minimalService(func(s *Service) {
			s.Replicas = 0
			s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = "rolling", 1, 4
		})},
		{"canary defaults", svc("update: {strategy: canary}"), minimalService(func(s *Service) {
			s.Update.Strategy, s.Update.Canary = "canary", 1
		})},
		{"canary as many as replicas", svc("replicas: 3", "update: {strategy: canary, canary: 3}"), minimalService(func(s *Service) {
			s.Replicas = 3
			s.Update.Strategy, s.Update.Canary = "canary", 3
		})},
		{"canary with zero replicas", svc("replicas: 0", "update: {strategy: canary, canary: 2}"), minimalService(func(s *Service) {
			s.Replicas = 0
			s.Update.Strategy, s.Update.Canary = "canary", 2
		})},
		{"explicit blue-green", svc("update: {strategy: blue-green}"), minimalService(func(s *Service) {})},
		{"share_consul_service", svc("share_consul_service: true"), minimalService(func(s *Service) { s.ShareConsulService = true })},
		{"share_consul_service false", svc("share_consul_service: false"), minimalService(func(s *Service) {})},
		{"largest values", svc("replicas: 1000", "cpus: 256", "memory: 1024GiB", "port: 65535",
			"check: {http: \"/healthz?probe=1&x=%20\", interval: 10m, timeout: 10m}",
			"update: {min_healthy_time: 23h59m, healthy_deadline: 24h, drain: 1h, shutdown_timeout: 1h}",
			"chaos: {interval: 720h}"), minimalService(func(s *Service) {
			s.Replicas, s.CPUs, s.MemoryMiB, s.Port = 1000, 256, 1<<20, 65535
			s.Check = Check{HTTP: "/healthz?probe=1&x=%20", Interval: 10 * time.Minute, Timeout: 10 * time.Minute}
			s.Update.MinHealthyTime, s.Update.HealthyDeadline = 23*time.Hour+59*time.Minute, 24*time.Hour
			s.Update.Drain, s.Update.ShutdownTimeout = time.Hour, time.Hour
			s.Chaos = &Chaos{Interval: 720 * time.Hour}
		})},
		{"smallest memory, printable unicode in version and cmdline", svc("memory: 16MiB", "version: \"1.0 – ünïcode\"",
			`image: {kernel: {url: "file:///k", sha256: "`+hexA+`"}, cmdline: "console=ttyS0 motd=héllo"}`), minimalService(func(s *Service) {
			s.MemoryMiB, s.Version, s.Image.Cmdline = 16, "1.0 – ünïcode", "console=ttyS0 motd=héllo"
		})},
		{"chaos without window", svc("chaos: {interval: 10m}"), minimalService(func(s *Service) {
			s.Chaos = &Chaos{Interval: 10 * time.Minute}
		})},
		{"chaos window unquoted", svc("chaos: {interval: 1h30m, window: 02:00-04:00}"), minimalService(func(s *Service) {
			s.Chaos = &Chaos{Interval: 90 * time.Minute, Window: &Window{Start: 2 * time.Hour, End: 4 * time.Hour}}
		})},
		{"chaos window wrapping midnight, block style", minimal("    chaos:\n      window: '23:45-00:15'\n      interval: 1s\n"), minimalService(func(s *Service) {
			s.Chaos = &Chaos{Interval: time.Second, Window: &Window{Start: 23*time.Hour + 45*time.Minute, End: 15 * time.Minute}}
		})},
		{"chaos window whole day but a minute", svc(`chaos: {interval: 1m, window: "00:00-23:59"}`), minimalService(func(s *Service) {
			s.Chaos = &Chaos{Interval: time.Minute, Window: &Window{Start: 0, End: 23*time.Hour + 59*time.Minute}}
		})},
		{"merge keys into update and chaos", minimal(`    update: {<<: &roll {strategy: rolling, max_surge: 2}, max_unavailable: 1}
    chaos: {<<: &burn {interval: 5m, window: "01:00-02:00"}}
`), minimalService(func(s *Service) {
			s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = "rolling", 2, 1
			s.Chaos = &Chaos{Interval: 5 * time.Minute, Window: &Window{Start: time.Hour, End: 2 * time.Hour}}
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tt.input))
			if err != nil {
				t.Fatalf("Parse:\n%s\nerror: %v", tt.input, err)
			}
			got := f.Services[0]
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("input:\n%s\n got %s\nwant %s", tt.input, dump(&Fleet{Services: []Service{got}}), dump(&Fleet{Services: []Service{tt.want}}))
			}
		})
	}
}

func TestParseEmptyFleet(t *testing.T) {
	for _, input := range []string{"services: []\n", "services: [] # nothing runs\n"} {
		f, err := Parse("f.yaml", []byte(input))
		if err != nil {
			t.Fatalf("Parse(%q): %v", input, err)
		}
		if f.Services == nil || len(f.Services) != 0 {
			t.Errorf("Parse(%q).Services = %#v, want empty non-nil", input, f.Services)
		}
	}
}

// svc replaces the line of minimal() that starts with the same key (after "    "), or
// appends the line; so each case shows only what it changes.
func svc(lines ...string) string {
	base := strings.Split(strings.TrimSuffix(minimal(""), "\n"), "\n")
	for _, l := range lines {
		key, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		replaced := false
		if key == "name" {
			base[1] = "  - " + l
			continue
		}
		for i, b := range base {
			if strings.HasPrefix(b, "    "+key+":") {
				base[i] = "    " + l
				replaced = true
				// image spans two lines in minimal(); drop its body when it is replaced.
				if key == "image" && i+1 < len(base) && strings.HasPrefix(base[i+1], "      ") {
					base = append(base[:i+1], base[i+2:]...)
				}
				break
			}
		}
		if !replaced {
			base = append(base, "    "+l)
		}
	}
	return strings.Join(base, "\n") + "\n"
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		{"empty file", "", []string{
			`f.yaml:1:1: empty fleet file: want a mapping with a "services" list`}},
		{"only comments", "# nothing\n", []string{
			`f.yaml:1:1: empty fleet file: want a mapping with a "services" list`}},
		{"no services key", "foo: 1\n", []string{
			`f.yaml:1:1: unknown field "foo"; allowed: services`,
			`f.yaml:1:1: missing required field "services"`}},
		{"top level is a list", "- a\n", []string{
			`f.yaml:1:1: want a mapping with a "services" list, got a list`}},
		{"services null", "services:\n", []string{
			`f.yaml:1:10: services: want a list, got null`}},
		{"services mapping", "services: {web: {}}\n", []string{
			`f.yaml:1:11: services: want a list, got a mapping`}},
		{"service not a mapping", "services: [web]\n", []string{
			`f.yaml:1:12: services[0]: service: want a mapping, got string "web"`}},
		{"syntax error", "services: [\n", []string{
			`f.yaml:1:1: invalid YAML: did not find expected node content`}},
		{"tab indentation", "services:\n\t- name: web\n", []string{
			`f.yaml:2:1: invalid YAML: found character that cannot start any token`}},
		{"two documents", "services: []\n---\nservices: []\n", []string{
			`f.yaml:2:1: several YAML documents: put every service in the first one`}},
		{"missing everything", "services:\n  - {}\n", []string{
			`f.yaml:2:5: services[0]: missing required field "name"`,
			`f.yaml:2:5: services[0]: missing required field "version"`,
			`f.yaml:2:5: services[0]: missing required field "image"`,
			`f.yaml:2:5: services[0]: missing required field "port"`,
			`f.yaml:2:5: services[0]: missing required field "check"`}},
		{"unknown service field", svc("replica: 2"), []string{
			`f.yaml:8:5: service web: unknown field "replica"; allowed: name, version, replicas, cpus, memory, image, network, port, check, update, cloud_init, chaos, share_consul_service`}},
		{"unknown nested field", svc("check: {http: /, retries: 3}"), []string{
			`f.yaml:7:22: service web: unknown field "check.retries"; allowed in check: http, tcp, interval, timeout`}},
		{"unknown artifact field", svc(`image: {disk: {url: "file:///d", sha256: "` + hexA + `", size: 1}}`), []string{
			`f.yaml:4:114: service web: unknown field "image.disk.size"; allowed in image.disk: url, sha256`}},
		{"duplicate field", minimal("    port: 82\n"), []string{
			`f.yaml:8:5: service web: duplicate field "port" (first at f.yaml:6:5)`}},
		{"bad name uppercase", svc("name: Web"), []string{
			`f.yaml:2:11: services[0]: name "Web" is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes`}},
		{"bad name too long", svc("name: a2345678901234567890123456789012"), []string{
			`f.yaml:2:11: services[0]: name "a2345678901234567890123456789012" is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes`}},
		{"bad name leading digit", svc("name: 1web"), []string{
			`f.yaml:2:11: services[0]: name "1web" is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes`}},
		{"name not a string", svc("name: 12"), []string{
			`f.yaml:2:11: services[0]: name: want a string, got integer 12`}},
		{"duplicate names", minimal("  - name: web\n    version: v2\n    image: {disk: {url: \"file:///d\", sha256: \"" + hexA + "\"}}\n    port: 1\n    check: {tcp: true}\n"), []string{
			`f.yaml:8:5: duplicate service name "web" (first declared at f.yaml:2:5)`}},
		{"empty version", svc(`version: ""`), []string{
			`f.yaml:3:14: service web: version must not be empty`}},
		{"version a list", svc(`version: [1]`), []string{
			`f.yaml:3:14: service web: version: want a string, got a list`}},
		{"negative replicas", svc("replicas: -1"), []string{
			`f.yaml:8:15: service web: replicas must be between 0 and 1000, got -1`}},
		{"replicas a string", svc(`replicas: "2"`), []string{
			`f.yaml:8:15: service web: replicas: want an integer, got string "2"`}},
		{"replicas a float", svc(`replicas: 1.5`), []string{
			`f.yaml:8:15: service web: replicas: want an integer, got number 1.5`}},
		{"replicas huge", svc(`replicas: 99999999999999999999`), []string{
			`f.yaml:8:15: service web: replicas: want an integer, got number 99999999999999999999`}},
		{"zero cpus", svc("cpus: 0"), []string{
			`f.yaml:8:11: service web: cpus must be between 1 and 256, got 0`}},
		{"memory without unit", svc("memory: 256"), []string{
			`f.yaml:8:13: service web: memory: want a size with unit MiB or GiB such as 256MiB or 1GiB, got integer 256`}},
		{"memory MB", svc("memory: 256MB"), []string{
			`f.yaml:8:13: service web: memory: want a size with unit MiB or GiB such as 256MiB or 1GiB, got string "256MB"`}},
		{"memory zero", svc("memory: 0GiB"), []string{
			`f.yaml:8:13: service web: memory must be at least 16MiB, got 0GiB`}},
		{"memory huge", svc("memory: 9999999999GiB"), []string{
			`f.yaml:8:13: service web: memory 9999999999GiB is too large: at most 1024GiB`}},
		{"image without kernel or disk", svc(`image: {cmdline: "quiet"}`), []string{
			`f.yaml:4:12: service web: image: at least one of kernel or disk is required`,
			`f.yaml:4:13: service web: image.cmdline needs image.kernel`}},
		{"initrd without kernel", svc(`image: {disk: {url: "file:///d", sha256: "` + hexA + `"}, initrd: {url: "file:///i", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:115: service web: image.initrd needs image.kernel`}},
		{"image a string", svc(`image: disk.qcow2`), []string{
			`f.yaml:4:12: service web: image: want a mapping, got string "disk.qcow2"`}},
		{"artifact missing url and sha256", svc(`image: {kernel: {}}`), []string{
			`f.yaml:4:21: service web: missing required field "image.kernel.url"`,
			`f.yaml:4:21: service web: missing required field "image.kernel.sha256"`}},
		{"artifact relative file url", svc(`image: {kernel: {url: "file://srv/k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: file URL "file://srv/k" must be absolute, such as file:///srv/images/disk.qcow2`}},
		{"artifact opaque file url", svc(`image: {kernel: {url: "file:k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: file URL "file:k" must be absolute, such as file:///srv/images/disk.qcow2`}},
		{"artifact ftp url", svc(`image: {kernel: {url: "ftp://h/k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: URL "ftp://h/k": want a file://, http:// or https:// URL`}},
		{"artifact path instead of url", svc(`image: {kernel: {url: "/srv/k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: URL "/srv/k": want a file://, http:// or https:// URL`}},
		{"artifact http without host", svc(`image: {kernel: {url: "http:///k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: URL "http:///k" has no host`}},
		{"sha256 short", svc(`image: {kernel: {url: "file:///k", sha256: "abc"}}`), []string{
			`f.yaml:4:48: service web: image.kernel.sha256: want 64 hex digits, got "abc"`}},
		{"sha256 not hex", svc(`image: {kernel: {url: "file:///k", sha256: "` + strings.Repeat("g", 64) + `"}}`), []string{
			`f.yaml:4:48: service web: image.kernel.sha256: want 64 hex digits, got "` + strings.Repeat("g", 64) + `"`}},
		{"network bad mode", svc("network: {mode: nat}"), []string{
			`f.yaml:8:21: service web: network.mode: want user, bridge or network, got "nat"`}},
		{"network bridge missing", svc("network: {mode: bridge}"), []string{
			`f.yaml:8:21: service web: network.bridge is required with mode bridge`}},
		{"network network missing", svc("network: {mode: network}"), []string{
			`f.yaml:8:21: service web: network.network is required with mode network`}},
		{"network bridge with user mode", svc("network: {bridge: br0}"), []string{
			`f.yaml:8:15: service web: network.bridge is only allowed with mode bridge, not user`}},
		{"missing port", strings.Replace(minimal(""), "    port: 80\n", "", 1), []string{
			`f.yaml:2:5: service web: missing required field "port"`}},
		{"port zero", svc("port: 0"), []string{
			`f.yaml:6:11: service web: port must be between 1 and 65535, got 0`}},
		{"port too big", svc("port: 65536"), []string{
			`f.yaml:6:11: service web: port must be between 1 and 65535, got 65536`}},
		{"check neither", svc("check: {interval: 1s}"), []string{
			`f.yaml:7:12: service web: check: one of http (a path) or tcp: true is required`}},
		{"check tcp false", svc("check: {tcp: false}"), []string{
			`f.yaml:7:12: service web: check: one of http (a path) or tcp: true is required`}},
		{"check both", svc("check: {http: /, tcp: true}"), []string{
			`f.yaml:7:12: service web: check: set only one of http or tcp`}},
		{"check http relative", svc("check: {http: healthz}"), []string{
			`f.yaml:7:19: service web: check.http: want a path starting with /, got "healthz"`}},
		{"check tcp a string", svc(`check: {tcp: "yes"}`), []string{
			`f.yaml:7:12: service web: check: one of http (a path) or tcp: true is required`,
			`f.yaml:7:18: service web: check.tcp: want true or false, got string "yes"`}},
		{"check interval without unit", svc("check: {http: /, interval: 5}"), []string{
			`f.yaml:7:32: service web: check.interval: want a duration such as 5s, got integer 5`}},
		{"check interval zero", svc("check: {http: /, interval: 0s}"), []string{
			`f.yaml:7:32: service web: check.interval must be greater than 0, got 0s`}},
		{"check timeout negative", svc("check: {http: /, timeout: -1s}"), []string{
			`f.yaml:7:31: service web: check.timeout must be greater than 0, got -1s`}},
		{"check timeout over interval", svc("check: {http: /, interval: 1s, timeout: 2s}"), []string{
			`f.yaml:7:45: service web: check.timeout 2s must not be longer than check.interval 1s`}},
		{"update unknown strategy", svc("update: {strategy: recreate}"), []string{
			`f.yaml:8:24: service web: update.strategy: want blue-green, rolling or canary, got "recreate"`}},
		{"update strategy not a string", svc("update: {strategy: 1, max_surge: 2}"), []string{
			`f.yaml:8:24: service web: update.strategy: want a string, got integer 1`}},
		{"max_surge with default strategy", svc("update: {max_surge: 2}"), []string{
			`f.yaml:8:14: service web: update.max_surge is only allowed with strategy rolling, not blue-green`}},
		{"max_unavailable with canary", svc("update: {strategy: canary, max_unavailable: 1}"), []string{
			`f.yaml:8:32: service web: update.max_unavailable is only allowed with strategy rolling, not canary`}},
		{"canary with rolling", svc("update: {strategy: rolling, canary: 2}"), []string{
			`f.yaml:8:33: service web: update.canary is only allowed with strategy canary, not rolling`}},
		{"canary with blue-green", svc("update: {strategy: blue-green, canary: 1}"), []string{
			`f.yaml:8:36: service web: update.canary is only allowed with strategy canary, not blue-green`}},
		{"max_surge negative", svc("update: {strategy: rolling, max_surge: -1}"), []string{
			`f.yaml:8:44: service web: update.max_surge must be between 0 and 1000, got -1`}},
		{"max_unavailable negative", svc("update: {strategy: rolling, max_unavailable: -1}"), []string{
			`f.yaml:8:50: service web: update.max_unavailable must be between 0 and 1000, got -1`}},
		{"max_surge a string", svc(`update: {strategy: rolling, max_surge: "1"}`), []string{
			`f.yaml:8:44: service web: update.max_surge: want an integer, got string "1"`}},
		{"max_surge a percentage", svc(`update: {strategy: rolling, max_surge: 25%}`), []string{
			`f.yaml:8:44: service web: update.max_surge: want an integer, got string "25%"`}},
		{"max_surge out of range", svc(`update: {strategy: rolling, max_surge: 99999999999}`), []string{
			`f.yaml:8:44: service web: update.max_surge: integer 99999999999 is out of range`}},
		{"surge and unavailable both zero", svc("update: {strategy: rolling, max_surge: 0}"), []string{
			`f.yaml:8:44: service web: update: max_surge and max_unavailable cannot both be 0: the rollout could never make progress`}},
		{"surge and unavailable both written zero", minimal("    update:\n      strategy: rolling\n      max_unavailable: 0\n      max_surge: 0\n"), []string{
			`f.yaml:11:18: service web: update: max_surge and max_unavailable cannot both be 0: the rollout could never make progress`}},
		{"surge zero, unavailable invalid", svc("update: {strategy: rolling, max_surge: 0, max_unavailable: x}"), []string{
			`f.yaml:8:64: service web: update.max_unavailable: want an integer, got string "x"`}},
		{"max_unavailable over replicas", svc("replicas: 2", "update: {strategy: rolling, max_unavailable: 3}"), []string{
			`f.yaml:9:50: service web: update.max_unavailable 3 must not be more than replicas 2`}},
		{"max_unavailable over default replicas", svc("update: {strategy: rolling, max_unavailable: 2}"), []string{
			`f.yaml:8:50: service web: update.max_unavailable 2 must not be more than replicas 1`}},
		{"invalid replicas skips the bounds", svc("replicas: -1", "update: {strategy: rolling, max_unavailable: 5}"), []string{
			`f.yaml:8:15: service web: replicas must be between 0 and 1000, got -1`}},
		{"canary zero", svc("update: {strategy: canary, canary: 0}"), []string{
			`f.yaml:8:40: service web: update.canary must be between 1 and 1000, got 0`}},
		{"canary over replicas", svc("replicas: 2", "update: {strategy: canary, canary: 3}"), []string{
			`f.yaml:9:40: service web: update.canary 3 must not be more than replicas 2`}},
		{"canary over default replicas", svc("update: {strategy: canary, canary: 2}"), []string{
			`f.yaml:8:40: service web: update.canary 2 must not be more than replicas 1`}},
		{"misplaced and negative", svc("update: {max_surge: -2}"), []string{
			`f.yaml:8:14: service web: update.max_surge is only allowed with strategy rolling, not blue-green`,
			`f.yaml:8:25: service web: update.max_surge must be between 0 and 1000, got -2`}},
		{"misplaced zeros report no progress error", svc("update: {strategy: canary, max_surge: 0, max_unavailable: 0}"), []string{
			`f.yaml:8:32: service web: update.max_surge is only allowed with strategy rolling, not canary`,
			`f.yaml:8:46: service web: update.max_unavailable is only allowed with strategy rolling, not canary`}},
		{"chaos a string", svc("chaos: 10m"), []string{
			`f.yaml:8:12: service web: chaos: want a mapping, got string "10m"`}},
		{"chaos null", svc("chaos:"), []string{
			`f.yaml:8:11: service web: chaos: want a mapping, got null`}},
		{"chaos empty", svc("chaos: {}"), []string{
			`f.yaml:8:12: service web: missing required field "chaos.interval"`}},
		{"chaos unknown field", svc("chaos: {interval: 1m, probability: 0.5}"), []string{
			`f.yaml:8:27: service web: unknown field "chaos.probability"; allowed in chaos: interval, window`}},
		{"chaos interval zero", svc("chaos: {interval: 0s}"), []string{
			`f.yaml:8:23: service web: chaos.interval must be greater than 0, got 0s`}},
		{"chaos interval negative", svc("chaos: {interval: -1m}"), []string{
			`f.yaml:8:23: service web: chaos.interval must be greater than 0, got -1m`}},
		{"chaos interval without unit", svc("chaos: {interval: 10}"), []string{
			`f.yaml:8:23: service web: chaos.interval: want a duration such as 5s, got integer 10`}},
		{"chaos window one-digit hours", svc(`chaos: {interval: 1m, window: "2:00-4:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "2:00-4:00"`}},
		{"chaos window 24:00", svc(`chaos: {interval: 1m, window: "22:00-24:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "22:00-24:00"`}},
		{"chaos window minute 60", svc(`chaos: {interval: 1m, window: "02:60-03:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "02:60-03:00"`}},
		{"chaos window one time", svc(`chaos: {interval: 1m, window: "02:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "02:00"`}},
		{"chaos window spaces", svc(`chaos: {interval: 1m, window: "02:00 - 04:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "02:00 - 04:00"`}},
		{"chaos window an integer", svc(`chaos: {interval: 1m, window: 2}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got integer 2`}},
		{"chaos window a mapping", svc(`chaos: {interval: 1m, window: {start: "02:00", end: "04:00"}}`), []string{
			`f.yaml:8:35: service web: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got a mapping`}},
		{"chaos window empty", svc(`chaos: {interval: 1m, window: "03:00-03:00"}`), []string{
			`f.yaml:8:35: service web: chaos.window 03:00-03:00 is empty: start and end must differ (leave window out to allow any time)`}},
		{"chaos window without interval", svc(`chaos: {window: "03:00-03:00"}`), []string{
			`f.yaml:8:12: service web: missing required field "chaos.interval"`,
			`f.yaml:8:21: service web: chaos.window 03:00-03:00 is empty: start and end must differ (leave window out to allow any time)`}},
		{"chaos merged unknown", svc(`chaos: {<<: {interval: 1m, every: 2}}`), []string{
			`f.yaml:8:32: service web: unknown field "chaos.every" (merged with <<); allowed in chaos: interval, window`}},
		{"update negative drain", svc("update: {drain: -1s, shutdown_timeout: -2s}"), []string{
			`f.yaml:8:21: service web: update.drain must not be negative, got -1s`,
			`f.yaml:8:44: service web: update.shutdown_timeout must not be negative, got -2s`}},
		{"update zero deadline", svc("update: {healthy_deadline: 0s}"), []string{
			`f.yaml:8:32: service web: update.healthy_deadline must be greater than 0, got 0s`}},
		{"update min healthy over deadline", svc("update: {min_healthy_time: 1m, healthy_deadline: 1m}"), []string{
			`f.yaml:8:32: service web: update.min_healthy_time 1m0s must be shorter than update.healthy_deadline 1m0s`}},
		{"update auto_rollback string", svc(`update: {auto_rollback: "false"}`), []string{
			`f.yaml:8:29: service web: update.auto_rollback: want true or false, got string "false"`}},
		{"update bad duration", svc(`update: {drain: soon}`), []string{
			`f.yaml:8:21: service web: update.drain: want a duration such as 5s, got string "soon"`}},
		{"merge of a scalar", svc(`update: {<<: 3}`), []string{
			`f.yaml:8:18: service web: merge key (<<) wants a mapping or a list of mappings, got integer 3`}},
		// Bounds of issue 7: every string printable and short, every number and duration
		// in a range an operator would write.
		{"drain 100000h", svc("update: {drain: 100000h}"), []string{
			`f.yaml:8:21: service web: update.drain must be at most 1h, got 100000h`}},
		{"drain negative huge", svc("update: {drain: -100000h}"), []string{
			`f.yaml:8:21: service web: update.drain must not be negative, got -100000h`}},
		{"healthy_deadline over a day", svc("update: {healthy_deadline: 25h}"), []string{
			`f.yaml:8:32: service web: update.healthy_deadline must be at most 24h, got 25h`}},
		{"shutdown_timeout over an hour", svc("update: {shutdown_timeout: 61m}"), []string{
			`f.yaml:8:32: service web: update.shutdown_timeout must be at most 1h, got 61m`}},
		{"min_healthy_time over a day", svc("update: {min_healthy_time: 48h}"), []string{
			`f.yaml:8:32: service web: update.min_healthy_time must be at most 24h, got 48h`}},
		{"min_healthy_time negative", svc("update: {min_healthy_time: -1s}"), []string{
			`f.yaml:8:32: service web: update.min_healthy_time must not be negative, got -1s`}},
		{"check interval over 10m", svc("check: {http: /, interval: 11m, timeout: 1s}"), []string{
			`f.yaml:7:32: service web: check.interval must be at most 10m, got 11m`}},
		{"check timeout over 10m", svc("check: {http: /, timeout: 1h}"), []string{
			`f.yaml:7:31: service web: check.timeout must be at most 10m, got 1h`}},
		{"chaos interval over 30 days", svc("chaos: {interval: 721h}"), []string{
			`f.yaml:8:23: service web: chaos.interval must be at most 720h, got 721h`}},
		{"cmdline with control character", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "console=ttyS0\x01 quiet"}`), []string{
			`f.yaml:4:126: service web: image.cmdline: character U+0001 at byte 13 is not printable: "console=ttyS0\x01 quiet"`}},
		{"cmdline with NUL", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\0b"}`), []string{
			`f.yaml:4:126: service web: image.cmdline: character U+0000 at byte 1 is not printable: "a\x00b"`}},
		{"cmdline with XML-invalid character", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\uFFFEb"}`), []string{
			`f.yaml:4:126: service web: image.cmdline: character U+FFFE at byte 1 is not printable: "a\ufffeb"`}},
		{"cmdline with line break", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\nb"}`), []string{
			`f.yaml:4:126: service web: image.cmdline: character U+000A at byte 1 is not printable: "a\nb"`}},
		{"cmdline with C1 control", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "a\x85b"}`), []string{
			`f.yaml:4:126: service web: image.cmdline: character U+0085 at byte 1 is not printable: "a\u0085b"`}},
		{"cmdline too long", svc(`image: {kernel: {url: "file:///k", sha256: "` + hexA + `"}, cmdline: "` + strings.Repeat("q", 2049) + `"}`), []string{
			`f.yaml:4:126: service web: image.cmdline is 2049 bytes, more than the 2048 allowed: "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"… (2049 bytes)`}},
		{"version too long", svc("version: " + strings.Repeat("1", 129)), []string{
			`f.yaml:3:14: service web: version is 129 bytes, more than the 128 allowed: "1111111111111111111111111111111111111111111111111111111111111111"… (129 bytes)`}},
		{"version with control character", svc(`version: "v1\a"`), []string{
			`f.yaml:3:14: service web: version: character U+0007 at byte 2 is not printable: "v1\a"`}},
		{"url too long", svc(`image: {kernel: {url: "file:///` + strings.Repeat("k", 2048) + `", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url is 2056 bytes, more than the 2048 allowed: "file:///kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"… (2056 bytes)`}},
		{"url with a space", svc(`image: {kernel: {url: "file:///k k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: a URL has no spaces (write %20): "file:///k%20k"`}},
		{"url credentials masked", svc(`image: {kernel: {url: "ftp://user:hunter2@h/k", sha256: "` + hexA + `"}}`), []string{
			`f.yaml:4:27: service web: image.kernel.url: URL "ftp://user:xxxxx@h/k": want a file://, http:// or https:// URL`}},
		{"check path too long", svc("check: {http: /" + strings.Repeat("h", 1024) + "}"), []string{
			`f.yaml:7:19: service web: check.http is 1025 bytes, more than the 1024 allowed: "/hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"… (1025 bytes)`}},
		{"check path with a space", svc(`check: {http: "/health z"}`), []string{
			`f.yaml:7:19: service web: check.http: want a URL path (and query) without spaces or '#', got "/health z"`}},
		{"check path with fragment", svc(`check: {http: "/health#z"}`), []string{
			`f.yaml:7:19: service web: check.http: want a URL path (and query) without spaces or '#', got "/health#z"`}},
		{"bridge name too long", svc("network: {mode: bridge, bridge: br0123456789abcd}"), []string{
			`f.yaml:8:37: service web: network.bridge is 16 bytes, more than the 15 allowed: "br0123456789abcd"`}},
		{"bridge name with slash", svc("network: {mode: bridge, bridge: ../eth0}"), []string{
			`f.yaml:8:37: service web: network.bridge: want letters, digits, '_', '.' or '-' (not first), got "../eth0"`}},
		{"network name with space", svc(`network: {mode: network, network: "my net"}`), []string{
			`f.yaml:8:39: service web: network.network: want letters, digits, '_', '.' or '-' (not first), got "my net"`}},
		{"replicas over 1000", svc("replicas: 1001"), []string{
			`f.yaml:8:15: service web: replicas must be between 0 and 1000, got 1001`}},
		{"cpus over 256", svc("cpus: 257"), []string{
			`f.yaml:8:11: service web: cpus must be between 1 and 256, got 257`}},
		{"memory under 16MiB", svc("memory: 8MiB"), []string{
			`f.yaml:8:13: service web: memory must be at least 16MiB, got 8MiB`}},
		{"memory over 1TiB", svc("memory: 1025GiB"), []string{
			`f.yaml:8:13: service web: memory 1025GiB is too large: at most 1024GiB`}},
		{"max_surge over 1000", svc("update: {strategy: rolling, max_surge: 100000}"), []string{
			`f.yaml:8:44: service web: update.max_surge must be between 0 and 1000, got 100000`}},
		{"share_consul_service not a boolean", svc(`share_consul_service: "yes"`), []string{
			`f.yaml:8:27: service web: share_consul_service: want true or false, got string "yes"`}},
		{"long sha256 excerpted", svc(`image: {kernel: {url: "file:///k", sha256: "` + strings.Repeat("a", 1000) + `"}}`), []string{
			`f.yaml:4:48: service web: image.kernel.sha256: want 64 hex digits, got "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"… (1000 bytes)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tt.input))
			if f != nil {
				t.Errorf("Parse returned a fleet with errors: %s", dump(f))
			}
			got := errorLines(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("input:\n%s\n got errors:\n\t%s\nwant errors:\n\t%s", tt.input, strings.Join(got, "\n\t"), strings.Join(tt.want, "\n\t"))
			}
		})
	}
}

// errorLines checks err is a non-empty Errors and returns its lines.
func errorLines(t *testing.T, err error) []string {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not Errors", err, err)
	}
	if len(errs) == 0 {
		t.Fatalf("empty Errors returned as an error")
	}
	if strings.Join(strings.Split(errs.Error(), "\n"), "\n") != err.Error() {
		t.Errorf("Errors.Error() differs from err.Error()")
	}
	return strings.Split(err.Error(), "\n")
}

// One file with several mistakes in several services: all are reported, in file order.
func TestParseReportsEveryError(t *testing.T) {
	input := `services:
  - name: web
    version: v1
    replicas: many
    image: {kernel: {url: "file:///k", sha256: "abc"}}
    port: 80
    check: {http: /}
  - name: Bad_Name
    version: v1
    image: {disk: {url: "ftp://x/d", sha256: "` + hexA + `"}}
    port: 70000
    check: {tcp: true}
    update: {strategy: rolling, max_surge: 0}
    chaos: {window: "2-4"}
    colour: blue
  - name: web
    image: {disk: {url: "file:///d", sha256: "` + hexA + `"}}
    port: 1
    check: {tcp: true}
`
	want := []string{
		`f.yaml:4:15: service web: replicas: want an integer, got string "many"`,
		`f.yaml:5:48: service web: image.kernel.sha256: want 64 hex digits, got "abc"`,
		`f.yaml:8:11: services[1]: name "Bad_Name" is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes`,
		`f.yaml:10:25: services[1]: image.disk.url: URL "ftp://x/d": want a file://, http:// or https:// URL`,
		`f.yaml:11:11: services[1]: port must be between 1 and 65535, got 70000`,
		`f.yaml:13:44: services[1]: update: max_surge and max_unavailable cannot both be 0: the rollout could never make progress`,
		`f.yaml:14:12: services[1]: missing required field "chaos.interval"`,
		`f.yaml:14:21: services[1]: chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got string "2-4"`,
		`f.yaml:15:5: services[1]: unknown field "colour"; allowed: name, version, replicas, cpus, memory, image, network, port, check, update, cloud_init, chaos, share_consul_service`,
		`f.yaml:16:5: service web: missing required field "version"`,
		`f.yaml:16:5: duplicate service name "web" (first declared at f.yaml:2:5)`,
	}
	_, err := Parse("f.yaml", []byte(input))
	got := errorLines(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got errors:\n\t%s\nwant errors:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func BenchmarkParse(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("services:\n")
	for i := range 20 {
		fmt.Fprintf(&sb, `  - name: svc-%d
    version: "1.%d.0"
    replicas: 3
    cpus: 2
    memory: 512MiB
    image:
      kernel: {url: "file:///srv/images/vmlinuz", sha256: "%s"}
      initrd: {url: "file:///srv/images/svc-%d.cpio.gz", sha256: "%s"}
      cmdline: "console=ttyS0 quiet"
    network: {mode: user}
    port: 8080
    check: {http: /healthz, interval: 1s, timeout: 1s}
    update: {strategy: blue-green, healthy_deadline: 2m, drain: 5s}
`, i, i, hexA, i, hexB)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := Parse("fleet.yaml", data)
		if err != nil || len(f.Services) != 20 {
			b.Fatalf("Parse: %v", err)
		}
	}
}

// Merges of merges of one anchor stand for 10^8 mappings once expanded: the alias bound
// refuses the file at the alias that crosses it (the seen set alone would only keep this
// parser's own walk short; every other reader of the file would expand it).
func TestParseMergeBomb(t *testing.T) {
	levels := []string{"&l0 {drain: 1s}"}
	for i := 1; i <= 8; i++ {
		alias := fmt.Sprintf("*l%d", i-1)
		levels = append(levels, fmt.Sprintf("&l%d {<<: [%s]}", i, strings.TrimSuffix(strings.Repeat(alias+", ", 10), ", ")))
	}
	input := svc("update: {<<: [" + strings.Join(levels, ", ") + "]}")
	_, err := Parse("f.yaml", []byte(input))
	got := errorLines(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], "f.yaml:8:") || !strings.Contains(got[0], "with its aliases expanded the file would be more than 2 MiB") {
		t.Errorf("Parse(merge bomb) = %q, want one error at line 8 about the expanded size", got)
	}
}

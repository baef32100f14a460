package sources

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// aliasBomb is the attack of issue 7: a file just under MaxFleetFileBytes holding one
// string of nearly that size and a thousand aliases to it, a gigabyte once expanded.
// The second alias is where the expanded file crosses 2 MiB.
func aliasBomb() (data string, secondAlias Pos) {
	return aliasBombOf(MaxFleetFileBytes-8<<10, 1000), Pos{File: "f.yaml", Line: 2, Col: len("services: [*s, ") + 1}
}

// The alias bomb is refused at the alias that crosses the bound, with a short message,
// having allocated little: before the bound it took 30 s and 5.9 GB and produced a
// 1 GB error.
func TestParseAliasBomb(t *testing.T) {
	data, at := aliasBomb()
	if len(data) > MaxFleetFileBytes {
		t.Fatalf("bomb is %d bytes, over the file limit: it would not test the alias bound", len(data))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := Parse("f.yaml", []byte(data))
	runtime.ReadMemStats(&after)
	if f != nil {
		t.Fatal("alias bomb parsed into a fleet")
	}
	want := at.String() + `: alias *s stands for 1016.0 KiB`
	got := errorLines(t, err)
	if len(got) != 1 || !strings.HasPrefix(got[0], at.String()+": alias *s stands for ") || !strings.Contains(got[0], "more than 2 MiB") {
		t.Errorf("Parse(alias bomb) errors = %q, want one starting %q", got, want)
	}
	if n := len(err.Error()); n > 1024 {
		t.Errorf("error is %d bytes, want a short one", n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 100<<20 {
		t.Errorf("parsing the alias bomb allocated %d MiB, want < 100 MiB", alloc>>20)
	}
}

func TestParseAliasBounds(t *testing.T) {
	manyAliases := "x: &a {}\nservices: [" + strings.Repeat("*a, ", maxAliases) + "*a]\n"
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"alias inside its anchor", "services: &a [*a]\n",
			`f.yaml:1:15: alias *a is inside the node it refers to`},
		{"alias inside its anchor, deeper", "services:\n  - &s {name: web, image: {kernel: *s}}\n",
			`f.yaml:2:36: alias *s is inside the node it refers to`},
		{"too many aliases", manyAliases,
			fmt.Sprintf(`f.yaml:2:%d: alias *a: more than %d aliases in one file`, len("services: [")+1+4*maxAliases, maxAliases)},
		{"long anchor name is quoted short", "x: &" + strings.Repeat("n", 100) + " " + `"` + strings.Repeat("v", 1<<20-1000) + `"` + "\nservices: [*" + strings.Repeat("n", 100) + ", *" + strings.Repeat("n", 100) + "]\n",
			`f.yaml:2:115: alias *"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"… (100 bytes) stands for 1023.0 KiB: with its aliases expanded the file would be more than 2 MiB; anchors and aliases are for sharing small blocks`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.input))
			if got := errorLines(t, err); len(got) != 1 || got[0] != tt.want {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Sharing blocks through anchors is what aliases are for: a fleet of MaxServices
// services that all alias one image, check and update block parses.
func TestParseManySharedAliases(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n")
	for i := range MaxServices {
		if i == 0 {
			fmt.Fprintf(&b, "  - {name: s%d, version: v1, port: 80, image: &img {kernel: {url: \"file:///k\", sha256: %q}}, check: &chk {tcp: true}, update: &upd {drain: 1s}}\n", i, hexA)
			continue
		}
		fmt.Fprintf(&b, "  - {name: s%d, version: v1, port: 80, image: *img, check: *chk, update: *upd}\n", i)
	}
	f, err := Parse("f.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("Parse: %.500v", err)
	}
	if len(f.Services) != MaxServices {
		t.Errorf("got %d services, want %d", len(f.Services), MaxServices)
	}
}

// However many problems a file has, the error names the first maxErrors and counts the
// rest, and each message quotes only an excerpt of the value.
func TestParseErrorsAreBounded(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	tests := []struct {
		name  string
		input string
	}{
		{"many bad services", "services: [" + strings.Repeat("1, ", 100_000) + "1]\n"},
		{"many unknown keys", "services:\n  - {" + strings.Repeat("k: 1, ", 50_000) + "k: 1}\n"},
		{"long unknown key", "services:\n  - {" + long + ": 1}\n"},
		{"long values everywhere", svc("name: "+long, "version: "+long, "replicas: "+long, "memory: "+long, "port: "+long,
			`image: {kernel: {url: "`+long+`", sha256: "`+long+`"}, cmdline: "`+long+`"}`,
			"network: {mode: "+long+"}", "check: {http: "+long+", interval: "+long+"}",
			"update: {strategy: "+long+", drain: "+long+"}", "chaos: {interval: "+long+", window: "+long+"}")},
		{"long long durations", svc("update: {drain: " + strings.Repeat("0", 100_000) + "100000h}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.input))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors", err)
			}
			if len(errs) > maxErrors+1 {
				t.Errorf("%d errors, want at most %d and a count", len(errs), maxErrors)
			}
			for _, e := range errs {
				if len(e.Msg) > maxMsgBytes+len("…") {
					t.Errorf("message of %d bytes: %.200s", len(e.Msg), e.Msg)
				}
			}
			if n := len(err.Error()); n > 64<<10 {
				t.Errorf("error text is %d bytes, want < 64 KiB", n)
			}
		})
	}
	// A thousand services are read, then the one too many is reported: 1001 problems.
	_, err := Parse("f.yaml", []byte(tests[0].input))
	lines := errorLines(t, err)
	if got, want := lines[len(lines)-1], "f.yaml:1:312: 901 more problems not shown (only the first 100 are)"; got != want {
		t.Errorf("last line = %q, want %q", got, want)
	}
}

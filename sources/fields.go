package sources

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The scalar fields of the schema: each reader checks the YAML type, then the bounds of
// limits.go, and reports what is wrong at the value with an excerpt of it.

var memoryRE = regexp.MustCompile(`^([0-9]+)(MiB|GiB)$`)

func (p *parser) require(b *block, name string) (field, bool) {
	f, ok := b.get(name)
	if !ok {
		p.errorf(b.node, "missing required field %q", b.fieldPath(name))
	}
	return f, ok
}

// str reads a string of any length; only for values checked against a pattern or a
// list right after.
func (p *parser) str(b *block, f field, name string) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!str" {
		p.errorf(f.val, "%s: want a string, got %s", b.fieldPath(name), describe(f.val))
		return "", false
	}
	return f.val.Value, true
}

// text reads a string that is used as it is written (a URL, a kernel command line): at
// most maxBytes long, and printable, so that it holds no control character and nothing
// XML cannot carry into a libvirt domain (which would be replaced, silently).
func (p *parser) text(b *block, f field, name string, maxBytes int) (string, bool) {
	v, ok := p.str(b, f, name)
	if !ok {
		return "", false
	}
	return v, p.checkText(f.val, b.fieldPath(name), v, maxBytes)
}

func (p *parser) checkText(at *yaml.Node, path, v string, maxBytes int) bool {
	if len(v) > maxBytes {
		p.errorf(at, "%s is %d bytes, more than the %d allowed: %s", path, len(v), maxBytes, excerpt(v))
		return false
	}
	if i, r, bad := unprintable(v); bad {
		p.errorf(at, "%s: character %U at byte %d is not printable: %s", path, r, i, excerpt(v))
		return false
	}
	return true
}

// unprintable finds the first character of s that is not valid UTF-8 or not printable
// (letters, marks, numbers, punctuation, symbols and the ASCII space; not tabs, line
// breaks, other controls, format characters or non-characters such as U+FFFE).
func unprintable(s string) (at int, r rune, bad bool) {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i, r, true
			}
		}
		if !unicode.IsPrint(r) {
			return i, r, true
		}
	}
	return 0, 0, false
}

// integer reads an integer in [lo, hi].
func (p *parser) integer(b *block, f field, name string, lo, hi int) (int, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!int" {
		p.errorf(f.val, "%s: want an integer, got %s", b.fieldPath(name), describe(f.val))
		return 0, false
	}
	var v int64
	if err := f.val.Decode(&v); err != nil || v > math.MaxInt32 || v < math.MinInt32 {
		p.errorf(f.val, "%s: integer %s is out of range", b.fieldPath(name), rawExcerpt(f.val.Value))
		return 0, false
	}
	if v < int64(lo) || v > int64(hi) {
		p.errorf(f.val, "%s must be between %d and %d, got %d", b.fieldPath(name), lo, hi, v)
		return 0, false
	}
	return int(v), true
}

func (p *parser) boolean(b *block, f field, name string) (bool, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!bool" {
		p.errorf(f.val, "%s: want true or false, got %s", b.fieldPath(name), describe(f.val))
		return false, false
	}
	var v bool
	if err := f.val.Decode(&v); err != nil {
		p.errorf(f.val, "%s: want true or false, got %s", b.fieldPath(name), describe(f.val))
		return false, false
	}
	return v, true
}

// durationRule says which durations a field takes: never negative, zero only when
// allowed, never above max.
type durationRule struct {
	positive bool // zero is not allowed
	max      time.Duration
}

// duration reads a Go duration such as 5s or 1m30s; a bare 0 is accepted, as Go does.
func (p *parser) duration(b *block, f field, name string, rule durationRule) (time.Duration, bool) {
	path := b.fieldPath(name)
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() == "!!null" {
		p.errorf(f.val, "%s: want a duration such as 5s, got %s", path, describe(f.val))
		return 0, false
	}
	d, err := time.ParseDuration(f.val.Value)
	if err != nil {
		p.errorf(f.val, "%s: want a duration such as 5s, got %s", path, describe(f.val))
		return 0, false
	}
	switch {
	case rule.positive && d <= 0:
		p.errorf(f.val, "%s must be greater than 0, got %s", path, rawExcerpt(f.val.Value))
	case d < 0:
		p.errorf(f.val, "%s must not be negative, got %s", path, rawExcerpt(f.val.Value))
	case d > rule.max:
		p.errorf(f.val, "%s must be at most %s, got %s", path, fmtDuration(rule.max), rawExcerpt(f.val.Value))
	default:
		return d, true
	}
	return 0, false
}

// fmtDuration formats a duration as a person writes it: 1h rather than 1h0m0s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// memory reads a size in MiB or GiB, within [MinMemoryMiB, MaxMemoryMiB].
func (p *parser) memory(f field) (int, bool) {
	n := f.val
	bad := func() (int, bool) {
		p.errorf(n, "memory: want a size with unit MiB or GiB such as 256MiB or 1GiB, got %s", describe(n))
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return bad()
	}
	m := memoryRE.FindStringSubmatch(n.Value)
	if m == nil {
		return bad()
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err == nil && m[2] == "GiB" {
		if v > math.MaxInt64/1024 {
			err = strconv.ErrRange
		}
		v *= 1024
	}
	switch {
	case err != nil || v > MaxMemoryMiB:
		p.errorf(n, "memory %s is too large: at most %dGiB", rawExcerpt(n.Value), MaxMemoryMiB/1024)
	case v < MinMemoryMiB:
		p.errorf(n, "memory must be at least %dMiB, got %s", MinMemoryMiB, rawExcerpt(n.Value))
	default:
		return int(v), true
	}
	return 0, false
}

// oneOf reads a string that must be one of choices.
func (p *parser) oneOf(b *block, f field, name string, choices ...string) (string, bool) {
	v, ok := p.str(b, f, name)
	if !ok {
		return "", false
	}
	for _, c := range choices {
		if v == c {
			return v, true
		}
	}
	p.errorf(f.val, "%s: want %s, got %s", b.fieldPath(name), orList(choices), excerpt(v))
	return "", false
}

// orList joins choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

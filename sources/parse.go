package sources

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults of the fleet file contract, version 1.
const (
	DefaultReplicas        = 1
	DefaultCPUs            = 1
	DefaultMemoryMiB       = 256
	DefaultNetworkMode     = "user"
	DefaultCheckInterval   = 5 * time.Second
	DefaultCheckTimeout    = 2 * time.Second
	DefaultStrategy        = StrategyBlueGreen
	DefaultMaxSurge        = 1 // rolling
	DefaultMaxUnavailable  = 0 // rolling
	DefaultCanary          = 1 // canary
	DefaultHealthyDeadline = 5 * time.Minute
	DefaultDrain           = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// Field names per block; the order is the order of the contract, used in messages.
var (
	topFields      = []string{"services"}
	serviceFields  = []string{"name", "version", "replicas", "cpus", "memory", "image", "network", "port", "check", "update", "chaos"}
	imageFields    = []string{"kernel", "initrd", "cmdline", "disk"}
	artifactFields = []string{"url", "sha256"}
	networkFields  = []string{"mode", "bridge", "network"}
	checkFields    = []string{"http", "tcp", "interval", "timeout"}
	updateFields   = []string{"strategy", "max_surge", "max_unavailable", "canary", "min_healthy_time", "healthy_deadline", "drain", "shutdown_timeout", "auto_rollback"}
	chaosFields    = []string{"interval", "window"}
)

var (
	nameRE     = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)
	memoryRE   = regexp.MustCompile(`^([0-9]+)(MiB|GiB)$`)
	sha256RE   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
	windowRE   = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
)

// maxMergeDepth bounds `<<` merge keys: an anchor can be merged into itself, and
// following that would never end.
const maxMergeDepth = 8

// Parse reads one fleet file. file is the name used in error positions. Every problem
// found is returned, as Errors; the fleet is nil unless there are none.
func Parse(file string, data []byte) (*Fleet, error) {
	f, errs := parseFile(file, data)
	errs = append(errs, checkDuplicates(f.Services)...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return f, nil
}

// parseFile parses without the cross-file checks, so a directory can be merged first.
func parseFile(file string, data []byte) (f *Fleet, errs Errors) {
	p := &parser{file: file}
	root, err := decodeYAML(data)
	if err != nil {
		return &Fleet{}, Errors{p.yamlError(err)}
	}
	if root == nil {
		return &Fleet{}, Errors{{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: `empty fleet file: want a mapping with a "services" list`}}
	}
	f = p.fleet(root)
	return f, p.errs
}

// decodeYAML returns the root node of the only document in data, or nil when there is
// no document at all.
func decodeYAML(data []byte) (root *yaml.Node, err error) {
	// yaml.v3 reports syntax errors by panicking internally; guard against any panic it
	// does not convert itself, since a fleet file is untrusted input.
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, err
	default:
		return nil, &multiDocError{line: next.Line}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root = doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	return root, nil
}

type multiDocError struct{ line int }

func (e *multiDocError) Error() string {
	return "several YAML documents: put every service in the first one"
}

type parser struct {
	file string
	errs Errors
	// ctx prefixes messages about one service, so the service is named in each.
	ctx string
}

func (p *parser) pos(n *yaml.Node) Pos {
	return Pos{File: p.file, Line: max(n.Line, 1), Col: max(n.Column, 1)}
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.ctx != "" {
		msg = p.ctx + ": " + msg
	}
	p.errs = append(p.errs, &Error{Pos: p.pos(n), Msg: msg})
}

func (p *parser) yamlError(err error) *Error {
	pos := Pos{File: p.file, Line: 1, Col: 1}
	var md *multiDocError
	if errors.As(err, &md) {
		pos.Line = max(md.line, 1)
		return &Error{Pos: pos, Msg: md.Error()}
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if line, convErr := strconv.Atoi(m[1]); convErr == nil && line > 0 {
			pos.Line = line
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &Error{Pos: pos, Msg: "invalid YAML: " + msg}
}

// field is one key of a mapping with its value, aliases already followed.
type field struct {
	key, val *yaml.Node
}

// block is a mapping of the fleet file, checked against the fields it allows.
type block struct {
	node   *yaml.Node
	path   string // e.g. "image.kernel"; empty for a service and the top level
	fields map[string]field
}

func (b *block) get(name string) (field, bool) {
	f, ok := b.fields[name]
	return f, ok
}

func (b *block) fieldPath(name string) string {
	if b.path == "" {
		return name
	}
	return b.path + "." + name
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!str":
		return fmt.Sprintf("string %q", n.Value)
	case "!!int":
		return "integer " + n.Value
	case "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	}
	return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)
}

// mapping checks that n is a mapping holding only allowed keys, each once, and returns
// its fields. Keys merged in with `<<` count as written in place, unless written.
func (p *parser) mapping(n *yaml.Node, path, what string, allowed []string) (*block, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n == nil {
			return nil, false
		}
		p.errorf(n, "%s: want a mapping, got %s", what, describe(n))
		return nil, false
	}
	b := &block{node: n, path: path, fields: map[string]field{}}
	p.collect(b, n, allowed, 0, true, map[*yaml.Node]bool{n: true})
	return b, true
}

// collect adds the fields of n to b. seen holds the mappings already collected: merging
// one twice adds nothing, and skipping it keeps aliased merges from multiplying the work
// (billion laughs).
func (p *parser) collect(b *block, n *yaml.Node, allowed []string, depth int, explicit bool, seen map[*yaml.Node]bool) {
	if depth > maxMergeDepth {
		p.errorf(n, "merge keys (<<) nested too deep")
		return
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		k = deref(k)
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			p.errorf(k, "field names must be strings, got %s", describe(k))
			continue
		}
		name := k.Value
		if prev, dup := b.fields[name]; dup {
			if explicit {
				p.errorf(k, "duplicate field %q (first at %s)", b.fieldPath(name), p.pos(prev.key))
			}
			continue
		}
		if !contains(allowed, name) {
			if explicit {
				p.errorf(k, "unknown field %q; allowed%s: %s", b.fieldPath(name), where(b.path), strings.Join(allowed, ", "))
			} else {
				p.errorf(k, "unknown field %q (merged with <<); allowed%s: %s", b.fieldPath(name), where(b.path), strings.Join(allowed, ", "))
			}
			continue
		}
		b.fields[name] = field{key: k, val: v}
	}
	// Written keys win over merged ones, and earlier merges over later ones, as in YAML 1.1.
	for _, m := range merges {
		var sources []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			for _, s := range m.Content {
				sources = append(sources, deref(s))
			}
		default:
			p.errorf(m, "merge key (<<) wants a mapping or a list of mappings, got %s", describe(m))
		}
		for _, s := range sources {
			if s == nil || s.Kind != yaml.MappingNode {
				p.errorf(m, "merge key (<<) wants a mapping or a list of mappings, got %s", describe(m))
				break
			}
			if !seen[s] {
				seen[s] = true
				p.collect(b, s, allowed, depth+1, false, seen)
			}
		}
	}
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) fleet(root *yaml.Node) *Fleet {
	f := &Fleet{Services: []Service{}}
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		p.errorf(root, `want a mapping with a "services" list, got %s`, describe(root))
		return f
	}
	top, _ := p.mapping(root, "", "fleet file", topFields)
	sf, ok := top.get("services")
	if !ok {
		p.errorf(root, `missing required field "services"`)
		return f
	}
	if sf.val.Kind != yaml.SequenceNode {
		p.errorf(sf.val, "services: want a list, got %s", describe(sf.val))
		return f
	}
	for i, item := range sf.val.Content {
		if s, ok := p.service(i, item); ok {
			f.Services = append(f.Services, s)
		}
	}
	return f
}

// service parses one entry of `services:`. ok is false when the entry is not even a
// mapping; otherwise the service is returned, possibly with errors reported, so that
// duplicate names are still found.
func (p *parser) service(i int, n *yaml.Node) (Service, bool) {
	p.ctx = fmt.Sprintf("services[%d]", i)
	defer func() { p.ctx = "" }()
	// Name the service in every message, those about its keys included, when its name
	// is valid; the name itself is checked below.
	if n := deref(n); n != nil && n.Kind == yaml.MappingNode {
		for j := 0; j+1 < len(n.Content); j += 2 {
			if k, v := deref(n.Content[j]), deref(n.Content[j+1]); k != nil && v != nil && k.Value == "name" && v.ShortTag() == "!!str" && nameRE.MatchString(v.Value) {
				p.ctx = "service " + v.Value
				break
			}
		}
	}
	b, ok := p.mapping(n, "", "service", serviceFields)
	if !ok {
		return Service{}, false
	}
	s := Service{
		Replicas:  DefaultReplicas,
		CPUs:      DefaultCPUs,
		MemoryMiB: DefaultMemoryMiB,
		Pos:       p.pos(b.node),
	}
	// Name first, so the other messages can say which service they are about.
	if f, ok := p.require(b, "name"); ok {
		if name, ok := p.str(b, f, "name"); ok {
			if nameRE.MatchString(name) {
				s.Name = name
			} else {
				p.errorf(f.val, "name %q is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes", name)
			}
		}
	}
	if f, ok := p.require(b, "version"); ok {
		if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() == "!!null" {
			p.errorf(f.val, "version: want a string, got %s", describe(f.val))
		} else if f.val.Value == "" {
			p.errorf(f.val, "version must not be empty")
		} else {
			// The raw text, so that `version: 1.10` stays "1.10".
			s.Version = f.val.Value
		}
	}
	// The update block is checked against replicas only when replicas is valid, so a
	// typo there is not reported a second time as a bad update block.
	replicasOK := true
	if f, ok := b.get("replicas"); ok {
		replicasOK = false
		if v, ok := p.integer(b, f, "replicas"); ok {
			if v < 0 {
				p.errorf(f.val, "replicas must be >= 0, got %d", v)
			} else {
				s.Replicas = v
				replicasOK = true
			}
		}
	}
	if f, ok := b.get("cpus"); ok {
		if v, ok := p.integer(b, f, "cpus"); ok {
			if v < 1 {
				p.errorf(f.val, "cpus must be >= 1, got %d", v)
			} else {
				s.CPUs = v
			}
		}
	}
	if f, ok := b.get("memory"); ok {
		if v, ok := p.memory(f); ok {
			s.MemoryMiB = v
		}
	}
	if f, ok := p.require(b, "image"); ok {
		s.Image = p.image(f.val)
	}
	s.Network = p.network(b)
	if f, ok := p.require(b, "port"); ok {
		if v, ok := p.integer(b, f, "port"); ok {
			if v < 1 || v > 65535 {
				p.errorf(f.val, "port must be between 1 and 65535, got %d", v)
			} else {
				s.Port = v
			}
		}
	}
	if f, ok := p.require(b, "check"); ok {
		s.Check = p.check(f.val)
	}
	s.Update = p.update(b, s.Replicas, replicasOK)
	s.Chaos = p.chaos(b)
	return s, true
}

func (p *parser) require(b *block, name string) (field, bool) {
	f, ok := b.get(name)
	if !ok {
		p.errorf(b.node, "missing required field %q", b.fieldPath(name))
	}
	return f, ok
}

func (p *parser) str(b *block, f field, name string) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!str" {
		p.errorf(f.val, "%s: want a string, got %s", b.fieldPath(name), describe(f.val))
		return "", false
	}
	return f.val.Value, true
}

func (p *parser) integer(b *block, f field, name string) (int, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!int" {
		p.errorf(f.val, "%s: want an integer, got %s", b.fieldPath(name), describe(f.val))
		return 0, false
	}
	var v int64
	if err := f.val.Decode(&v); err != nil || v > math.MaxInt32 || v < math.MinInt32 {
		p.errorf(f.val, "%s: integer %s is out of range", b.fieldPath(name), f.val.Value)
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

// duration reads a Go duration such as 5s or 1m30s; a bare 0 is accepted, as Go does.
func (p *parser) duration(b *block, f field, name string) (time.Duration, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() == "!!null" {
		p.errorf(f.val, "%s: want a duration such as 5s, got %s", b.fieldPath(name), describe(f.val))
		return 0, false
	}
	d, err := time.ParseDuration(f.val.Value)
	if err != nil {
		p.errorf(f.val, "%s: want a duration such as 5s, got %s", b.fieldPath(name), describe(f.val))
		return 0, false
	}
	return d, true
}

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
		if v > math.MaxInt32/1024 {
			err = strconv.ErrRange
		}
		v *= 1024
	}
	if err != nil || v > math.MaxInt32 {
		p.errorf(n, "memory %s is too large", n.Value)
		return 0, false
	}
	if v == 0 {
		p.errorf(n, "memory must be greater than 0, got %s", n.Value)
		return 0, false
	}
	return int(v), true
}

func (p *parser) image(n *yaml.Node) Image {
	var img Image
	b, ok := p.mapping(n, "image", "image", imageFields)
	if !ok {
		return img
	}
	if f, ok := b.get("kernel"); ok {
		img.Kernel = p.artifact(f.val, "image.kernel")
	}
	if f, ok := b.get("disk"); ok {
		img.Disk = p.artifact(f.val, "image.disk")
	}
	_, hasKernel := b.get("kernel")
	_, hasDisk := b.get("disk")
	if !hasKernel && !hasDisk {
		p.errorf(b.node, "image: at least one of kernel or disk is required")
	}
	if f, ok := b.get("initrd"); ok {
		img.Initrd = p.artifact(f.val, "image.initrd")
		if !hasKernel {
			p.errorf(f.key, "image.initrd needs image.kernel")
		}
	}
	if f, ok := b.get("cmdline"); ok {
		if v, ok := p.str(b, f, "cmdline"); ok {
			img.Cmdline = v
		}
		if !hasKernel {
			p.errorf(f.key, "image.cmdline needs image.kernel")
		}
	}
	return img
}

func (p *parser) artifact(n *yaml.Node, path string) *Artifact {
	b, ok := p.mapping(n, path, path, artifactFields)
	if !ok {
		return nil
	}
	a := &Artifact{}
	if f, ok := p.require(b, "url"); ok {
		if v, ok := p.str(b, f, "url"); ok {
			if msg := checkImageURL(v); msg != "" {
				p.errorf(f.val, "%s: %s", b.fieldPath("url"), msg)
			} else {
				a.URL = v
			}
		}
	}
	if f, ok := p.require(b, "sha256"); ok {
		if v, ok := p.str(b, f, "sha256"); ok {
			if sha256RE.MatchString(v) {
				a.SHA256 = strings.ToLower(v)
			} else {
				p.errorf(f.val, "%s: want 64 hex digits, got %q", b.fieldPath("sha256"), v)
			}
		}
	}
	return a
}

// checkImageURL returns what is wrong with an image URL, or "" when it is usable.
func checkImageURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("invalid URL %q", s)
	}
	switch u.Scheme {
	case "file":
		// file://host/path would silently drop the host, and file:rel has no path at all.
		if u.Host != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return fmt.Sprintf("file URL %q must be absolute, such as file:///srv/images/disk.qcow2", s)
		}
	case "http", "https":
		if u.Host == "" {
			return fmt.Sprintf("URL %q has no host", s)
		}
	default:
		return fmt.Sprintf("URL %q: want a file://, http:// or https:// URL", s)
	}
	return ""
}

func (p *parser) network(svc *block) Network {
	nw := Network{Mode: DefaultNetworkMode}
	f, ok := svc.get("network")
	if !ok {
		return nw
	}
	b, ok := p.mapping(f.val, "network", "network", networkFields)
	if !ok {
		return nw
	}
	modeNode := b.node
	if f, ok := b.get("mode"); ok {
		modeNode = f.val
		v, ok := p.str(b, f, "mode")
		if !ok {
			return nw
		}
		switch v {
		case "user", "bridge", "network":
			nw.Mode = v
		default:
			p.errorf(f.val, "network.mode: want user, bridge or network, got %q", v)
			return nw
		}
	}
	for _, name := range []string{"bridge", "network"} {
		f, ok := b.get(name)
		var v string
		if ok {
			v, ok = p.str(b, f, name)
			if !ok {
				continue
			}
		}
		switch {
		case nw.Mode == name && v == "":
			p.errorf(modeNode, "network.%s is required with mode %s", name, name)
		case nw.Mode != name && ok:
			p.errorf(f.key, "network.%s is only allowed with mode %s, not %s", name, name, nw.Mode)
		case name == "bridge":
			nw.Bridge = v
		default:
			nw.Network = v
		}
	}
	return nw
}

func (p *parser) check(n *yaml.Node) Check {
	c := Check{Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout}
	b, ok := p.mapping(n, "check", "check", checkFields)
	if !ok {
		return c
	}
	httpF, hasHTTP := b.get("http")
	if hasHTTP {
		if v, ok := p.str(b, httpF, "http"); ok {
			if !strings.HasPrefix(v, "/") {
				p.errorf(httpF.val, "check.http: want a path starting with /, got %q", v)
			} else {
				c.HTTP = v
			}
		}
	}
	if f, ok := b.get("tcp"); ok {
		if v, ok := p.boolean(b, f, "tcp"); ok {
			c.TCP = v
		}
	}
	switch {
	case hasHTTP && c.TCP:
		p.errorf(b.node, "check: set only one of http or tcp")
	case !hasHTTP && !c.TCP:
		p.errorf(b.node, "check: one of http (a path) or tcp: true is required")
	}

	intervalF, hasInterval := b.get("interval")
	if hasInterval {
		if d, ok := p.duration(b, intervalF, "interval"); ok {
			if d <= 0 {
				p.errorf(intervalF.val, "check.interval must be greater than 0, got %s", intervalF.val.Value)
			} else {
				c.Interval = d
			}
		}
	}
	if f, ok := b.get("timeout"); ok {
		if d, ok := p.duration(b, f, "timeout"); ok {
			switch {
			case d <= 0:
				p.errorf(f.val, "check.timeout must be greater than 0, got %s", f.val.Value)
			case d > c.Interval:
				p.errorf(f.val, "check.timeout %s must not be longer than check.interval %s", d, c.Interval)
			default:
				c.Timeout = d
			}
		}
	} else {
		// A short interval alone must not make the default timeout invalid.
		c.Timeout = min(DefaultCheckTimeout, c.Interval)
	}
	return c
}

// update parses the `update:` block. replicasOK says whether replicas holds the value
// written (or its default) rather than a fallback for an invalid one.
func (p *parser) update(svc *block, replicas int, replicasOK bool) Update {
	u := Update{
		Strategy:        DefaultStrategy,
		HealthyDeadline: DefaultHealthyDeadline,
		Drain:           DefaultDrain,
		ShutdownTimeout: DefaultShutdownTimeout,
		AutoRollback:    true,
	}
	f, ok := svc.get("update")
	if !ok {
		return u
	}
	b, ok := p.mapping(f.val, "update", "update", updateFields)
	if !ok {
		return u
	}
	// With an invalid strategy, which of its fields are allowed is unknown: say nothing
	// about them rather than guess.
	strategyOK := true
	if f, ok := b.get("strategy"); ok {
		v, ok := p.str(b, f, "strategy")
		switch {
		case !ok:
			strategyOK = false
		case v == StrategyBlueGreen || v == StrategyRolling || v == StrategyCanary:
			u.Strategy = v
		default:
			p.errorf(f.val, "update.strategy: want blue-green, rolling or canary, got %q", v)
			strategyOK = false
		}
	}
	p.strategyCounts(b, &u, strategyOK, replicas, replicasOK)
	durations := []struct {
		name     string
		dst      *time.Duration
		positive bool // else zero is allowed
	}{
		{"min_healthy_time", &u.MinHealthyTime, false},
		{"healthy_deadline", &u.HealthyDeadline, true},
		{"drain", &u.Drain, false},
		{"shutdown_timeout", &u.ShutdownTimeout, false},
	}
	for _, d := range durations {
		f, ok := b.get(d.name)
		if !ok {
			continue
		}
		v, ok := p.duration(b, f, d.name)
		switch {
		case !ok:
		case d.positive && v <= 0:
			p.errorf(f.val, "update.%s must be greater than 0, got %s", d.name, f.val.Value)
		case v < 0:
			p.errorf(f.val, "update.%s must not be negative, got %s", d.name, f.val.Value)
		default:
			*d.dst = v
		}
	}
	if u.MinHealthyTime >= u.HealthyDeadline {
		at := b.node
		if f, ok := b.get("min_healthy_time"); ok {
			at = f.val
		}
		p.errorf(at, "update.min_healthy_time %s must be shorter than update.healthy_deadline %s", u.MinHealthyTime, u.HealthyDeadline)
	}
	if f, ok := b.get("auto_rollback"); ok {
		if v, ok := p.boolean(b, f, "auto_rollback"); ok {
			u.AutoRollback = v
		}
	}
	return u
}

// strategyCounts parses the integer fields that belong to one strategy each, applies
// their defaults for the strategy in u, and checks them against each other and replicas.
func (p *parser) strategyCounts(b *block, u *Update, strategyOK bool, replicas int, replicasOK bool) {
	switch u.Strategy {
	case StrategyRolling:
		u.MaxSurge, u.MaxUnavailable = DefaultMaxSurge, DefaultMaxUnavailable
	case StrategyCanary:
		u.Canary = DefaultCanary
	}
	counts := []struct {
		name     string
		dst      *int
		min      int
		strategy string
	}{
		{"max_surge", &u.MaxSurge, 0, StrategyRolling},
		{"max_unavailable", &u.MaxUnavailable, 0, StrategyRolling},
		{"canary", &u.Canary, 1, StrategyCanary},
	}
	// valid holds the fields written with a valid value, those cross-checked below.
	valid := map[string]*yaml.Node{}
	for _, c := range counts {
		f, ok := b.get(c.name)
		if !ok {
			continue
		}
		if strategyOK && u.Strategy != c.strategy {
			p.errorf(f.key, "update.%s is only allowed with strategy %s, not %s", c.name, c.strategy, u.Strategy)
		}
		v, ok := p.integer(b, f, c.name)
		switch {
		case !ok:
		case v < c.min:
			p.errorf(f.val, "update.%s must be >= %d, got %d", c.name, c.min, v)
		case u.Strategy == c.strategy:
			*c.dst = v
			valid[c.name] = f.val
		}
	}
	// A max_unavailable written wrong is not 0, whatever the default says.
	_, badUnavailable := b.get("max_unavailable")
	badUnavailable = badUnavailable && valid["max_unavailable"] == nil
	switch u.Strategy {
	case StrategyRolling:
		// max_surge defaults to 1, so both are 0 only when max_surge is written as 0.
		if at := valid["max_surge"]; at != nil && !badUnavailable && u.MaxSurge == 0 && u.MaxUnavailable == 0 {
			p.errorf(at, "update: max_surge and max_unavailable cannot both be 0: the rollout could never make progress")
		}
		// replicas 0 is a service switched off: its update block stays valid for when it
		// is switched on again.
		if at := valid["max_unavailable"]; at != nil && replicasOK && replicas > 0 && u.MaxUnavailable > replicas {
			p.errorf(at, "update.max_unavailable %d must not be more than replicas %d", u.MaxUnavailable, replicas)
		}
	case StrategyCanary:
		if at := valid["canary"]; at != nil && replicasOK && replicas > 0 && u.Canary > replicas {
			p.errorf(at, "update.canary %d must not be more than replicas %d", u.Canary, replicas)
		}
	}
}

// chaos parses the optional `chaos:` block; nil when it is absent or not a mapping.
func (p *parser) chaos(svc *block) *Chaos {
	f, ok := svc.get("chaos")
	if !ok {
		return nil
	}
	b, ok := p.mapping(f.val, "chaos", "chaos", chaosFields)
	if !ok {
		return nil
	}
	c := &Chaos{}
	if f, ok := p.require(b, "interval"); ok {
		if d, ok := p.duration(b, f, "interval"); ok {
			if d <= 0 {
				p.errorf(f.val, "chaos.interval must be greater than 0, got %s", f.val.Value)
			} else {
				c.Interval = d
			}
		}
	}
	if f, ok := b.get("window"); ok {
		c.Window = p.window(f.val)
	}
	return c
}

// window reads a daily UTC time range HH:MM-HH:MM, which may wrap midnight.
func (p *parser) window(n *yaml.Node) *Window {
	var m []string
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		m = windowRE.FindStringSubmatch(n.Value)
	}
	if m == nil {
		p.errorf(n, "chaos.window: want a daily UTC time range HH:MM-HH:MM such as 02:00-04:00, got %s", describe(n))
		return nil
	}
	at := func(h, min string) time.Duration {
		// The pattern admits only two digits each, in range.
		hv, _ := strconv.Atoi(h)
		mv, _ := strconv.Atoi(min)
		return time.Duration(hv)*time.Hour + time.Duration(mv)*time.Minute
	}
	w := &Window{Start: at(m[1], m[2]), End: at(m[3], m[4])}
	if w.Start == w.End {
		p.errorf(n, "chaos.window %s is empty: start and end must differ (leave window out to allow any time)", n.Value)
		return nil
	}
	return w
}

// checkDuplicates reports every service whose name was already declared, pointing at
// both places, across files when a directory is merged.
func checkDuplicates(services []Service) Errors {
	var errs Errors
	first := map[string]Pos{}
	for _, s := range services {
		if s.Name == "" {
			continue
		}
		if at, dup := first[s.Name]; dup {
			errs = append(errs, &Error{Pos: s.Pos, Msg: fmt.Sprintf("duplicate service name %q (first declared at %s)", s.Name, at)})
			continue
		}
		first[s.Name] = s.Pos
	}
	return errs
}

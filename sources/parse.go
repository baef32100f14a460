package sources

import (
	"fmt"
	"regexp"
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
	topFields     = []string{"services"}
	serviceFields = []string{"name", "version", "replicas", "cpus", "memory", "image", "network", "port", "check", "update", "cloud_init", "chaos", "share_consul_service"}
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// Parse reads one fleet file. file is the name used in error positions. Every problem
// found is returned, as Errors; the fleet is nil unless there are none.
func Parse(file string, data []byte) (*Fleet, error) {
	f, errs := parseFile(file, data, MaxServices)
	var budget fleetBudget
	budget.add(file, int64(len(data)))
	if e := resolveUserData(f.Services, ".", noCompanions{}, &budget, map[string][]byte{}, &errs); e != nil {
		errs.add(e)
	}
	for _, e := range checkDuplicates(f.Services) {
		errs.add(e)
	}
	if !errs.empty() {
		return nil, errs.err()
	}
	return f, nil
}

// parseFile parses without the cross-file checks, so a directory can be merged first.
// room is how many services the fleet may still have (MaxServices less those of the
// files before); the services after them are not read.
func parseFile(file string, data []byte, room int) (*Fleet, errorSet) {
	p := &parser{file: file, room: room}
	if len(data) > MaxFleetFileBytes {
		p.errs.add(tooLarge(file, int64(len(data))))
		return &Fleet{}, p.errs
	}
	root, err := decodeYAML(data)
	if err != nil {
		p.errs.add(yamlError(file, err))
		return &Fleet{}, p.errs
	}
	if root == nil {
		p.errs.add(&Error{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: `empty fleet file: want a mapping with a "services" list`})
		return &Fleet{}, p.errs
	}
	return p.fleet(root), p.errs
}

// tooLarge is the problem of a fleet file over MaxFleetFileBytes.
func tooLarge(file string, size int64) *Error {
	return &Error{
		Pos: Pos{File: file, Line: 1, Col: 1},
		Msg: fmt.Sprintf("file is %d bytes, more than the %s a fleet file may have", size, fmtBytes(MaxFleetFileBytes)),
		Err: ErrFleetTooLarge,
	}
}

// parser reads the schema of one file from its YAML nodes.
type parser struct {
	file string
	errs errorSet
	// ctx prefixes messages about one service, so the service is named in each.
	ctx string
	// room is how many more services the fleet may have.
	room int
}

func (p *parser) pos(n *yaml.Node) Pos {
	return Pos{File: p.file, Line: max(n.Line, 1), Col: max(n.Column, 1)}
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	if p.errs.full() {
		p.errs.omit(p.pos(n))
		return
	}
	msg := fmt.Sprintf(format, args...)
	if p.ctx != "" {
		msg = p.ctx + ": " + msg
	}
	p.errs.add(&Error{Pos: p.pos(n), Msg: msg})
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
		if i >= p.room {
			p.errorf(item, "one service too many: a fleet has at most %d", MaxServices)
			break
		}
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
				p.errorf(f.val, "name %s is invalid: want a lowercase letter followed by up to 30 lowercase letters, digits or dashes", excerpt(name))
			}
		}
	}
	if f, ok := p.require(b, "version"); ok {
		if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() == "!!null" {
			p.errorf(f.val, "version: want a string, got %s", describe(f.val))
		} else if f.val.Value == "" {
			p.errorf(f.val, "version must not be empty")
		} else if p.checkText(f.val, "version", f.val.Value, MaxVersionBytes) {
			// The raw text, so that `version: 1.10` stays "1.10".
			s.Version = f.val.Value
		}
	}
	// The update block is checked against replicas only when replicas is valid, so a
	// typo there is not reported a second time as a bad update block.
	replicasOK := true
	if f, ok := b.get("replicas"); ok {
		var v int
		if v, replicasOK = p.integer(b, f, "replicas", 0, MaxReplicas); replicasOK {
			s.Replicas = v
		}
	}
	if f, ok := b.get("cpus"); ok {
		if v, ok := p.integer(b, f, "cpus", 1, MaxCPUs); ok {
			s.CPUs = v
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
		if v, ok := p.integer(b, f, "port", 1, 65535); ok {
			s.Port = v
		}
	}
	if f, ok := p.require(b, "check"); ok {
		s.Check = p.check(f.val)
	}
	s.Update = p.update(b, s.Replicas, replicasOK)
	if replicasOK {
		p.poolBudget(b, s)
	}
	s.CloudInit = p.cloudInit(b)
	s.Chaos = p.chaos(b)
	if f, ok := b.get("share_consul_service"); ok {
		s.ShareConsulService, _ = p.boolean(b, f, "share_consul_service")
	}
	return s, true
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

package sources

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Merge keys (`<<: *defaults`) are part of the fleet format. A fleet of many services
// repeats whole blocks (update, check, image) with one field changed, and a merge key is
// the only way YAML has to say that; yaml.v3 resolves `<<` as a merge, as most YAML
// tools do (YAML 1.2 dropped the type from its core schema, but not from practice), and
// fleets already use it. It costs nothing the alias bounds do not already cover: a
// merge's source is an alias or written in place, each merged mapping is read once per
// block (seen), and merges nest at most maxMergeDepth deep.
const maxMergeDepth = 8

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

// deref follows an alias to the node it names. decodeYAML has refused cycles; the
// bound is for nodes built any other way.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names what a node is, for "want X, got Y" messages; values are excerpts.
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
		return "string " + excerpt(n.Value)
	case "!!int":
		return "integer " + rawExcerpt(n.Value)
	case "!!float":
		return "number " + rawExcerpt(n.Value)
	case "!!bool":
		return "boolean " + rawExcerpt(n.Value)
	}
	return fmt.Sprintf("%s %s", clip(strings.TrimPrefix(n.ShortTag(), "!!"), excerptBytes), excerpt(n.Value))
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
				p.errorf(k, "duplicate field %s (first at %s)", excerpt(b.fieldPath(name)), p.pos(prev.key))
			}
			continue
		}
		if !slices.Contains(allowed, name) {
			merged := ""
			if !explicit {
				merged = " (merged with <<)"
			}
			p.errorf(k, "unknown field %s%s; allowed%s: %s", excerpt(b.fieldPath(name)), merged, where(b.path), strings.Join(allowed, ", "))
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

package sources

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Aliases let a short file stand for a huge document ("billion laughs"): a 1 MiB file
// holding a 1 MiB string and a thousand aliases of it is a gigabyte to walk and to quote
// in messages. The schema is read with aliases followed, so the document as expanded is
// bounded before anything else looks at it, and so is the number of aliases.
const (
	// maxAliases is the most aliases (*name) one fleet file may use: a few per service
	// for the image, check and update blocks they share.
	maxAliases = 4096
	// maxExpandedBytes bounds a file's size with every alias replaced by what it stands
	// for (one byte per node plus its text). A file without aliases measures about its
	// own size, so this leaves room for sharing and none for multiplying.
	maxExpandedBytes = 2 * MaxFleetFileBytes
)

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// decodeYAML returns the root node of the only document in data, or nil when there is
// no document at all. Its aliases are bounded (maxAliases, maxExpandedBytes) and refer
// to no node that contains them.
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
		return nil, &nodeError{line: next.Line, msg: "several YAML documents: put every service in the first one"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root = doc.Content[0]
	if err := checkAliases(root); err != nil {
		return nil, err
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	return root, nil
}

// nodeError is a problem with the document as a whole, found at a line (and column,
// when known) rather than in a field of the schema.
type nodeError struct {
	line, col int
	msg       string
}

func (e *nodeError) Error() string { return e.msg }

// yamlError turns what decodeYAML returned into a positioned Error. yaml.v3 puts the
// line into the text of its syntax errors, so it is taken back out of it.
func yamlError(file string, err error) *Error {
	pos := Pos{File: file, Line: 1, Col: 1}
	var ne *nodeError
	if errors.As(err, &ne) {
		pos.Line, pos.Col = max(ne.line, 1), max(ne.col, 1)
		return &Error{Pos: pos, Msg: ne.msg}
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
	return &Error{Pos: pos, Msg: "invalid YAML: " + clip(msg, 200)}
}

// aliasCheck measures a document with its aliases expanded, stopping at the first
// alias over a bound. Each anchored node is measured once and remembered, so the
// measuring costs the size of the file, not of its expansion.
type aliasCheck struct {
	size    map[*yaml.Node]int64 // expanded size of anchored nodes measured so far
	open    map[*yaml.Node]bool  // nodes being measured: an alias to one is a cycle
	aliases int
	total   int64
	err     *nodeError
}

func checkAliases(root *yaml.Node) error {
	c := &aliasCheck{size: map[*yaml.Node]int64{}, open: map[*yaml.Node]bool{}}
	c.measure(root)
	if c.err != nil {
		return c.err
	}
	return nil
}

func (c *aliasCheck) fail(n *yaml.Node, format string, args ...any) {
	c.err = &nodeError{line: n.Line, col: n.Column, msg: fmt.Sprintf(format, args...)}
}

// measure returns the expanded size of n and adds it to the total.
func (c *aliasCheck) measure(n *yaml.Node) int64 {
	if c.err != nil || n == nil {
		return 0
	}
	if n.Kind == yaml.AliasNode {
		return c.alias(n)
	}
	if n.Anchor != "" {
		if s, ok := c.size[n]; ok {
			c.total += s
			return s
		}
		c.open[n] = true
		defer delete(c.open, n)
	}
	s := int64(1 + len(n.Value))
	c.total += s
	for _, child := range n.Content {
		s += c.measure(child)
		if c.err != nil {
			return 0
		}
	}
	if n.Anchor != "" {
		c.size[n] = s
	}
	return s
}

func (c *aliasCheck) alias(n *yaml.Node) int64 {
	c.aliases++
	name := rawExcerpt(n.Value)
	if c.aliases > maxAliases {
		c.fail(n, "alias *%s: more than %d aliases in one file", name, maxAliases)
		return 0
	}
	target := n.Alias
	if target == nil {
		return 0
	}
	if c.open[target] {
		c.fail(n, "alias *%s is inside the node it refers to", name)
		return 0
	}
	s, ok := c.size[target]
	if !ok {
		// An anchor comes before its aliases, so it has been measured; measure it here
		// (once) should a document ever be built otherwise.
		before := c.total
		s = c.measure(target)
		c.total = before
		if c.err != nil {
			return 0
		}
	}
	c.total += s
	if c.total > maxExpandedBytes {
		c.fail(n, "alias *%s stands for %s: with its aliases expanded the file would be more than %s; anchors and aliases are for sharing small blocks", name, fmtBytes(s), fmtBytes(maxExpandedBytes))
		return 0
	}
	return s
}

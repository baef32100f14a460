package sources

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var cloudInitFields = []string{"user_data"}

// cloudInit parses the optional `cloud_init:` block; nil when it is absent or not a
// mapping. The user-data file itself is read once the whole fleet file is parsed
// (resolveUserData), from the same commit.
func (p *parser) cloudInit(svc *block) *CloudInit {
	f, ok := svc.get("cloud_init")
	if !ok {
		return nil
	}
	b, ok := p.mapping(f.val, "cloud_init", "cloud_init", cloudInitFields)
	if !ok {
		return nil
	}
	uf, ok := p.require(b, "user_data")
	if !ok {
		return nil
	}
	v, ok := p.text(b, uf, "user_data", MaxUserDataPathBytes)
	if !ok {
		return nil
	}
	if msg := checkRelPath(v); msg != "" {
		p.errorf(uf.val, "cloud_init.user_data %s: %s", excerpt(v), msg)
		return nil
	}
	return &CloudInit{UserData: v, Pos: p.pos(uf.key)}
}

// checkRelPath says what is wrong with a path that must name a file beside the fleet
// file, inside the repository, or "" when nothing is.
func checkRelPath(v string) string {
	switch {
	case v == "":
		return "want a path relative to the fleet file"
	case strings.HasPrefix(v, "/"):
		return "want a path relative to the fleet file, not an absolute one"
	case strings.Contains(v, "\\"):
		return "want a path with / between its parts"
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return `".." is not allowed: the file must be in the fleet file's directory or below it`
		}
	}
	if path.Clean(v) == "." {
		return "want a file, not a directory"
	}
	return ""
}

// companions reads the files a fleet file names besides itself (cloud_init.user_data),
// from the same source and revision as the fleet file. Paths are clean slash paths in
// the source.
type companions interface {
	// stat measures the file without reading it; it refuses symlinks (the file or any
	// directory on its way) and anything but a regular file. A missing file is
	// errNoCompanion.
	stat(p string) (int64, error)
	read(p string) ([]byte, error)
	// display is how errors name the file.
	display(p string) string
}

// errNoCompanion: the file a fleet file names does not exist in the source.
var errNoCompanion = errors.New("no such file")

// resolveUserData reads every service's user-data file, relative to dir (the fleet
// file's directory in the source), counting it in the fleet's budget, and checks its
// content. A file several services name is read and counted once.
func resolveUserData(services []Service, dir string, src companions, budget *fleetBudget, seen map[string][]byte, errs *errorSet) *Error {
	for i := range services {
		ci := services[i].CloudInit
		if ci == nil {
			continue
		}
		who := "service " + services[i].Name
		if services[i].Name == "" {
			who = "service" // its name was invalid, and reported so
		}
		p := path.Join(dir, ci.UserData)
		if data, ok := seen[p]; ok {
			ci.Content = data
			continue
		}
		shown := src.display(p)
		size, err := src.stat(p)
		if err != nil {
			msg := fmt.Sprintf("cloud_init.user_data: %s: %v", shown, err)
			if errors.Is(err, errNoCompanion) {
				msg = fmt.Sprintf("cloud_init.user_data: %s does not exist at this revision", shown)
			}
			errs.add(&Error{Pos: ci.Pos, Msg: who + ": " + msg})
			continue
		}
		if e := budget.add(shown, size); e != nil {
			return e
		}
		data, err := src.read(p)
		if err != nil {
			var es Errors
			if errors.As(err, &es) && len(es) > 0 {
				return es[0] // it grew past the limit after it was measured
			}
			errs.add(&Error{Pos: ci.Pos, Msg: fmt.Sprintf("%s: cloud_init.user_data: read %s: %v", who, shown, err)})
			continue
		}
		for _, e := range checkUserData(shown, data) {
			errs.add(e)
		}
		seen[p] = data
		ci.Content = data
	}
	return nil
}

var (
	jinjaHeaderRE = regexp.MustCompile(`^##\s*template:\s*jinja\s*$`)
	// jinjaRE matches what cloud-init's jinja renders away before it parses the YAML:
	// expressions {{ }}, statements {% %} and comments {# #}, each on one line.
	jinjaRE = regexp.MustCompile(`\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}`)
)

// checkUserData checks that data is cloud-config user-data cloud-init will take:
// `#cloud-config` on the first line (after `## template: jinja` for a template) and a
// YAML mapping below it. A template is checked with every jinja expression replaced by
// a plain word of its length, so positions still point into the file as written.
func checkUserData(file string, data []byte) Errors {
	at := func(line, col int, format string, args ...any) Errors {
		return Errors{{Pos: Pos{File: file, Line: line, Col: col}, Msg: "user-data: " + clip(fmt.Sprintf(format, args...), maxMsgBytes)}}
	}
	lines := strings.SplitAfter(string(data), "\n")
	first := strings.TrimRight(lines[0], "\r\n")
	header := 1
	jinja := jinjaHeaderRE.MatchString(first)
	if jinja {
		if len(lines) < 2 {
			return at(1, 1, "a jinja template needs #cloud-config on its second line")
		}
		first = strings.TrimRight(lines[1], "\r\n")
		header = 2
	}
	if strings.TrimRight(first, " \t") != "#cloud-config" {
		return at(header, 1, "want #cloud-config on line %d (or \"## template: jinja\" then #cloud-config), got %s", header, excerpt(first))
	}
	body := data
	if jinja {
		body = jinjaRE.ReplaceAllFunc(data, func(m []byte) []byte {
			return bytes.Repeat([]byte("j"), len(m))
		})
	}
	root, err := decodeYAML(body)
	if err != nil {
		e := yamlError(file, err)
		e.Msg = "user-data: " + e.Msg
		return Errors{e}
	}
	if root == nil {
		return nil // only the header: cloud-init takes an empty cloud-config
	}
	if root = deref(root); root.Kind != yaml.MappingNode {
		return at(max(root.Line, 1), max(root.Column, 1), "want a YAML mapping of cloud-config modules, got %s", describe(root))
	}
	return nil
}

// noCompanions is the source of a fleet file parsed alone (Parse): it has no files
// beside it to read.
type noCompanions struct{}

func (noCompanions) stat(string) (int64, error) {
	return 0, errors.New("a fleet file parsed alone has no repository to read it from")
}
func (noCompanions) read(string) ([]byte, error) { return nil, errNoCompanion }
func (noCompanions) display(p string) string     { return p }

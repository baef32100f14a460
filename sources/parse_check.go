package sources

import (
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var checkFields = []string{"http", "tcp", "interval", "timeout"}

// checkPathRE is an absolute URL path with an optional query, in the characters RFC 3986
// allows there: Consul appends it to http://address:port as it is.
var checkPathRE = regexp.MustCompile(`^/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$`)

func (p *parser) check(n *yaml.Node) Check {
	c := Check{Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout}
	b, ok := p.mapping(n, "check", "check", checkFields)
	if !ok {
		return c
	}
	httpF, hasHTTP := b.get("http")
	if hasHTTP {
		if v, ok := p.text(b, httpF, "http", MaxCheckPathBytes); ok {
			switch {
			case !strings.HasPrefix(v, "/"):
				p.errorf(httpF.val, "check.http: want a path starting with /, got %s", excerpt(v))
			case !checkPathRE.MatchString(v):
				p.errorf(httpF.val, "check.http: want a URL path (and query) without spaces or '#', got %s", excerpt(v))
			default:
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

	if f, ok := b.get("interval"); ok {
		if d, ok := p.duration(b, f, "interval", durationRule{positive: true, max: MaxCheckInterval}); ok {
			c.Interval = d
		}
	}
	if f, ok := b.get("timeout"); ok {
		if d, ok := p.duration(b, f, "timeout", durationRule{positive: true, max: MaxCheckInterval}); ok {
			if d > c.Interval {
				p.errorf(f.val, "check.timeout %s must not be longer than check.interval %s", d, c.Interval)
			} else {
				c.Timeout = d
			}
		}
	} else {
		// A short interval alone must not make the default timeout invalid.
		c.Timeout = min(DefaultCheckTimeout, c.Interval)
	}
	return c
}

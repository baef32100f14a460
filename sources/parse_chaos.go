package sources

import (
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	chaosFields = []string{"interval", "window"}
	windowRE    = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
)

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
		if d, ok := p.duration(b, f, "interval", durationRule{positive: true, max: MaxChaosInterval}); ok {
			c.Interval = d
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

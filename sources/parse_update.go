package sources

import (
	"time"

	"gopkg.in/yaml.v3"
)

var updateFields = []string{"strategy", "max_surge", "max_unavailable", "canary", "min_healthy_time", "healthy_deadline", "drain", "shutdown_timeout", "auto_rollback"}

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
		var v string
		if v, strategyOK = p.oneOf(b, f, "strategy", StrategyBlueGreen, StrategyRolling, StrategyCanary); strategyOK {
			u.Strategy = v
		}
	}
	p.strategyCounts(b, &u, strategyOK, replicas, replicasOK)
	durations := []struct {
		name string
		dst  *time.Duration
		rule durationRule
	}{
		// min_healthy_time is bounded by healthy_deadline, checked below.
		{"min_healthy_time", &u.MinHealthyTime, durationRule{max: MaxHealthyDeadline}},
		{"healthy_deadline", &u.HealthyDeadline, durationRule{positive: true, max: MaxHealthyDeadline}},
		{"drain", &u.Drain, durationRule{max: MaxDrain}},
		{"shutdown_timeout", &u.ShutdownTimeout, durationRule{max: MaxShutdownTimeout}},
	}
	for _, d := range durations {
		if f, ok := b.get(d.name); ok {
			if v, ok := p.duration(b, f, d.name, d.rule); ok {
				*d.dst = v
			}
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
		if v, ok := p.integer(b, f, c.name, c.min, MaxReplicas); ok && u.Strategy == c.strategy {
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

package client

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/reconciler"
)

// ConsulStore is what the fallback needs from Consul; *discovery.Client has it.
type ConsulStore interface {
	KVList(ctx context.Context, prefix string) (map[string][]byte, error)
	KVPut(ctx context.Context, key string, value []byte) error
	KVDelete(ctx context.Context, key string) error
	Instances(ctx context.Context, tag string) ([]discovery.Instance, error)
}

var _ ConsulStore = (*discovery.Client)(nil)

// Where a fleet's records live in Consul KV, under drover/fleets/<fleet>/. The
// reconciler writes them; the fallback reads them and, for suspend, resume and retry,
// writes them as a running Drover's Control would.
const (
	fleetsPrefix = "drover/fleets/"
	failedDir    = "failed/"    // <service>: the held revision (reconciler/failures.go)
	suspendedDir = "suspended/" // <service>: reconciler.Suspended as JSON
	eventsDir    = "events/"    // the ring: every value that decodes as an Event
)

// Consul answers from Consul directly when no Drover does: what Consul keeps of a
// fleet (its instances on the local agent, held revisions, suspensions, the event
// ring), but not what only a running Drover knows (the commit's desired state, a
// rollout's progress). Its Status says so in FleetStatus.Error.
type Consul struct {
	Store ConsulStore
	// Fleet is the fleet's name; empty: the only one Consul has.
	Fleet string
	// Addr is the agent's address, for messages.
	Addr string
	// Now stamps suspensions; time.Now by default.
	Now func() time.Time
}

// fleet is the fleet to act on: c.Fleet, or the only one Consul's KV has records of.
func (c *Consul) fleet(ctx context.Context) (string, error) {
	if c.Fleet != "" {
		return c.Fleet, nil
	}
	kv, err := c.Store.KVList(ctx, fleetsPrefix)
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for key := range kv {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, fleetsPrefix), "/")
		if name != "" {
			seen[name] = true
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range seen {
			if !yield(n) {
				return
			}
		}
	})
	switch len(names) {
	case 0:
		return "", fmt.Errorf("consul at %s holds no drover fleet under %s: give --fleet", c.Addr, fleetsPrefix)
	case 1:
		return names[0], nil
	}
	return "", fmt.Errorf("consul at %s holds several drover fleets (%s): choose one with --fleet", c.Addr, strings.Join(names, ", "))
}

// Status is what Consul knows of the fleet, per service: instances by version and
// health, held revision, suspension. Desired version and progress stay empty.
func (c *Consul) Status(ctx context.Context) (reconciler.FleetStatus, error) {
	fleet, err := c.fleet(ctx)
	if err != nil {
		return reconciler.FleetStatus{}, err
	}
	insts, err := c.Store.Instances(ctx, reconciler.Tag)
	if err != nil {
		return reconciler.FleetStatus{}, err
	}
	held, err := c.records(ctx, fleet, failedDir)
	if err != nil {
		return reconciler.FleetStatus{}, err
	}
	suspended, err := c.records(ctx, fleet, suspendedDir)
	if err != nil {
		return reconciler.FleetStatus{}, err
	}
	byName := map[string]*reconciler.ServiceStatus{}
	service := func(name string) *reconciler.ServiceStatus {
		if s := byName[name]; s != nil {
			return s
		}
		s := &reconciler.ServiceStatus{Name: name, Phase: "unknown"}
		byName[name] = s
		return s
	}
	for _, in := range insts {
		if in.Meta[reconciler.MetaFleet] != fleet {
			continue
		}
		s := service(in.Service)
		vm := reconciler.VMStatus{Name: in.ID, Version: in.Meta["version"], Revision: in.Meta["revision"], State: "registered", Health: string(in.Status)}
		if in.Address != "" {
			vm.Address = fmt.Sprintf("%s:%d", in.Address, in.Port)
		}
		s.VMs = append(s.VMs, vm)
		countVersion(s, vm.Version, in.Status == discovery.StatusPassing)
	}
	for name, raw := range held {
		var h reconciler.Hold
		if err := json.Unmarshal(raw, &h); err != nil {
			continue // the reconciler ignores it too
		}
		s := service(name)
		s.Held, s.Phase = &h, "held"
	}
	for name, raw := range suspended {
		var sus reconciler.Suspended
		if err := json.Unmarshal(raw, &sus); err != nil {
			continue
		}
		s := service(name)
		s.Suspended, s.Phase = &sus, "suspended"
	}
	st := reconciler.FleetStatus{
		Fleet: fleet,
		Error: "read from Consul at " + c.Addr + " (no Drover answered): the desired state and rollout progress are unknown",
	}
	for _, s := range byName {
		slices.SortFunc(s.Versions, func(a, b reconciler.VersionCount) int { return cmp.Compare(a.Version, b.Version) })
		st.Services = append(st.Services, *s)
	}
	sort.Slice(st.Services, func(i, j int) bool { return st.Services[i].Name < st.Services[j].Name })
	return st, nil
}

func countVersion(s *reconciler.ServiceStatus, version string, passing bool) {
	i := slices.IndexFunc(s.Versions, func(v reconciler.VersionCount) bool { return v.Version == version })
	if i < 0 {
		s.Versions = append(s.Versions, reconciler.VersionCount{Version: version})
		i = len(s.Versions) - 1
	}
	s.Versions[i].Total++
	if passing {
		s.Versions[i].Passing++
	}
}

// records are the values under drover/fleets/<fleet>/<dir> by the key's last part.
func (c *Consul) records(ctx context.Context, fleet, dir string) (map[string][]byte, error) {
	prefix := fleetsPrefix + fleet + "/" + dir
	kv, err := c.Store.KVList(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(kv))
	for key, v := range kv {
		if name := strings.TrimPrefix(key, prefix); name != "" && !strings.Contains(name, "/") {
			out[name] = v
		}
	}
	return out, nil
}

// History is the fleet's event ring as stored, oldest first, filtered and cut like
// the API's.
func (c *Consul) History(ctx context.Context, service string, limit int) ([]reconciler.Event, error) {
	fleet, err := c.fleet(ctx)
	if err != nil {
		return nil, err
	}
	kv, err := c.Store.KVList(ctx, fleetsPrefix+fleet+"/"+eventsDir)
	if err != nil {
		return nil, err
	}
	var out []reconciler.Event
	for _, raw := range kv {
		var ev reconciler.Event
		// The ring's bookkeeping (its head) is not an event and has no kind.
		if json.Unmarshal(raw, &ev) != nil || ev.Kind == "" {
			continue
		}
		if service == "" || ev.Service == service {
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, func(a, b reconciler.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// Suspend records the suspension where every Drover of the fleet reads it.
func (c *Consul) Suspend(ctx context.Context, service, reason string) error {
	fleet, err := c.known(ctx, service)
	if err != nil {
		return err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	raw, err := json.Marshal(reconciler.Suspended{Reason: reason, At: now().UTC()})
	if err != nil {
		return err
	}
	return c.Store.KVPut(ctx, fleetsPrefix+fleet+"/"+suspendedDir+service, raw)
}

// Resume deletes the suspension.
func (c *Consul) Resume(ctx context.Context, service string) error {
	fleet, err := c.known(ctx, service)
	if err != nil {
		return err
	}
	return c.Store.KVDelete(ctx, fleetsPrefix+fleet+"/"+suspendedDir+service)
}

// Retry deletes the held revision, so the next pass tries it again.
func (c *Consul) Retry(ctx context.Context, service string) error {
	fleet, err := c.known(ctx, service)
	if err != nil {
		return err
	}
	held, err := c.records(ctx, fleet, failedDir)
	if err != nil {
		return err
	}
	if held[service] == nil {
		return fmt.Errorf("retry %s: %w: no held revision of it in fleet %s", service, ErrNothingHeld, fleet)
	}
	return c.Store.KVDelete(ctx, fleetsPrefix+fleet+"/"+failedDir+service)
}

// ErrNothingHeld: retry of a service whose revision is not held.
var ErrNothingHeld = errors.New("nothing held")

// known is the fleet, once service is known in it: Consul has an instance or a
// record of it. Without the commit (only a Drover reads git), that is all there is.
func (c *Consul) known(ctx context.Context, service string) (string, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return "", err
	}
	for _, s := range st.Services {
		if s.Name == service {
			return st.Fleet, nil
		}
	}
	return "", fmt.Errorf("service %q: %w in fleet %s (Consul at %s has no instance or record of it)", service, ErrNotFound, st.Fleet, c.Addr)
}

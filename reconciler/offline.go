package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/sources"
)

// An Operator over Consul alone, for a CLI that reaches no running Drover: the same
// code as a running one reads and writes the fleet's records and event ring with, so
// there is one implementation of their format.

// InstanceLister lists the local Consul agent's instances carrying a tag.
type InstanceLister interface {
	Instances(ctx context.Context, tag string) ([]discovery.Instance, error)
}

// OfflineStore is what an offline Operator needs of Consul: the fleet's KV records,
// its event ring and its instances. *discovery.Client is one.
type OfflineStore interface {
	FailureStore
	EventStore
	InstanceLister
}

var _ OfflineStore = (*discovery.Client)(nil)

// NewOffline is an Operator over the fleet's records in Consul alone. History,
// Suspend, Resume and Retry work as they do through a running Drover (which honours
// them at its next pass), each order's event stored before it returns; FleetStatus
// is what Consul knows (instances, held revisions, suspensions: no desired state nor
// progress, every phase PhaseUnknown but held and suspended); Reconcile returns
// ErrNotRunning; Subscribe sees only this process's own events.
func NewOffline(fleet string, store OfflineStore, log *slog.Logger) (*Operator, error) {
	if store == nil {
		return nil, errors.New("offline operator: a store is required")
	}
	if err := ValidFleet(fleet); err != nil {
		return nil, fmt.Errorf("offline operator: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := Config{Fleet: fleet, Failures: store, Events: store, EventsKept: DefaultEventsKept, Log: log, Now: time.Now, OpTimeout: 2 * time.Minute}
	r := &Reconciler{cfg: cfg, log: log, failed: map[string]failure{}, suspended: map[string]Suspended{}, announced: map[string]string{}, work: newInflight()}
	return &Operator{Reconciler: r, offline: store}, nil
}

// StoredFleets are the fleets Consul KV holds records of (drover/fleets/<fleet>/…),
// sorted: what a CLI chooses from when not told which.
func StoredFleets(ctx context.Context, store FailureStore) ([]string, error) {
	const prefix = "drover/fleets/"
	kv, err := store.KVList(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list fleets under %s: %w", prefix, err)
	}
	seen := map[string]bool{}
	for key := range kv {
		name, _, _ := strings.Cut(strings.TrimPrefix(key, prefix), "/")
		if ValidFleet(name) == nil {
			seen[name] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// stored returns err, or, when offline, waits for the order's event to be stored: the
// CLI's process ends right after.
func (o *Operator) stored(ctx context.Context, err error) error {
	if err != nil || o.offline == nil {
		return err
	}
	return o.Reconciler.FlushEvents(ctx)
}

// offlineStatus lays the fleet's Consul instances, held revisions and suspensions out
// per service, as fleetStatus does for a running Drover without a desired revision.
func (o *Operator) offlineStatus(ctx context.Context) (FleetStatus, error) {
	r := o.Reconciler
	out := FleetStatus{Fleet: r.cfg.Fleet, Services: []ServiceStatus{}}
	instances, err := o.offline.Instances(ctx, Tag)
	if err != nil {
		return out, fmt.Errorf("fleet status: consul instances: %w", err)
	}
	failed, suspended, err := r.records(ctx)
	if err != nil {
		return out, fmt.Errorf("fleet status: %w", err)
	}
	byID := map[string]discovery.Instance{}
	// Each instance stands for its VM: only a Drover on the hypervisor sees the VMs.
	byService := map[string][]hypervisor.VM{}
	for _, inst := range instances {
		if inst.Meta[MetaFleet] != r.cfg.Fleet {
			continue
		}
		byID[inst.ID] = inst
		byService[inst.Service] = append(byService[inst.Service], hypervisor.VM{Name: inst.ID, State: "registered",
			Meta: hypervisor.Metadata{Fleet: r.cfg.Fleet, Service: inst.Service, Version: inst.Meta["version"], Revision: inst.Meta["revision"]}})
	}
	names := map[string]bool{}
	for _, m := range []map[string]bool{keySet(byService), keySet(failed), keySet(suspended)} {
		maps.Copy(names, m)
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		st := serviceStatus(sources.Service{Name: name}, "", byService[name], byID, false)
		st.Phase = PhaseUnknown
		if f, ok := failed[name]; ok {
			// Shown as stored: whether a newer commit ended it only a Drover reading git knows.
			st.Held = &Hold{Revision: f.Revision, Reason: r.redactReason(f.Reason), At: f.At}
			st.Phase = PhaseHeld
		}
		if s, ok := suspended[name]; ok {
			st.Suspended = &s
			st.Phase = PhaseSuspended
		}
		out.Services = append(out.Services, st)
	}
	return out, nil
}

// offlineKnown refuses a service Consul has no instance, record or event of, so a
// typo suspends nothing (the fleet file is not read here).
func (o *Operator) offlineKnown(ctx context.Context, service string) error {
	st, err := o.offlineStatus(ctx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(st.Services, func(s ServiceStatus) bool { return s.Name == service }) {
		return nil
	}
	// Instances are the local agent's only: a Drover registering elsewhere still left
	// the service's events in the shared ring.
	evs, err := o.Reconciler.History(ctx, service, 1)
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		return nil
	}
	return fmt.Errorf("%w %q in fleet %s: Consul has no instance, record or event of it", ErrUnknownService, service, st.Fleet)
}

func keySet[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

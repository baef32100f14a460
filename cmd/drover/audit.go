package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/drover-dev/drover/discovery"
	"github.com/drover-dev/drover/hypervisor"
	"github.com/drover-dev/drover/reconciler"
)

// The audit trail: every call that changes a VM, a Consul registration or Drover's KV
// records logs "mutating step" with its op just before it starts. It is how an operator
// (and the fencing tests) see which Drover changed what, and when: a leader that lost
// its lock must not start one after its successor did.
const auditMsg = "mutating step"

// auditedDriver logs the driver's mutating calls.
type auditedDriver struct {
	driver
	log *slog.Logger
}

func (a auditedDriver) Create(ctx context.Context, spec hypervisor.Spec) (hypervisor.VM, error) {
	a.log.Debug(auditMsg, "op", "create", "vm", spec.Name)
	return a.driver.Create(ctx, spec)
}

func (a auditedDriver) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	a.log.Debug(auditMsg, "op", "shutdown", "vm", name)
	return a.driver.Shutdown(ctx, name, timeout)
}

func (a auditedDriver) Destroy(ctx context.Context, name string) error {
	a.log.Debug(auditMsg, "op", "destroy", "vm", name)
	return a.driver.Destroy(ctx, name)
}

func (a auditedDriver) Sweep(ctx context.Context) ([]string, error) {
	a.log.Debug(auditMsg, "op", "sweep")
	return a.driver.Sweep(ctx)
}

// auditedRegistry logs the Consul client's mutating calls.
type auditedRegistry struct {
	*discovery.Client
	log *slog.Logger
}

func (a auditedRegistry) Register(ctx context.Context, reg discovery.Registration) error {
	a.log.Debug(auditMsg, "op", "register", "vm", reg.ID, "service", reg.Service)
	return a.Client.Register(ctx, reg)
}

func (a auditedRegistry) Deregister(ctx context.Context, id string) error {
	a.log.Debug(auditMsg, "op", "deregister", "vm", id)
	return a.Client.Deregister(ctx, id)
}

func (a auditedRegistry) SetMaintenance(ctx context.Context, id string, on bool, reason string) error {
	a.log.Debug(auditMsg, "op", "maintenance", "vm", id, "on", on)
	return a.Client.SetMaintenance(ctx, id, on, reason)
}

func (a auditedRegistry) KVPut(ctx context.Context, key string, value []byte) error {
	a.log.Debug(auditMsg, "op", "kv-put", "key", key)
	return a.Client.KVPut(ctx, key, value)
}

func (a auditedRegistry) KVCreate(ctx context.Context, key string, value []byte) (bool, error) {
	a.log.Debug(auditMsg, "op", "kv-create", "key", key)
	return a.Client.KVCreate(ctx, key, value)
}

func (a auditedRegistry) KVDelete(ctx context.Context, key string) error {
	a.log.Debug(auditMsg, "op", "kv-delete", "key", key)
	return a.Client.KVDelete(ctx, key)
}

var (
	_ reconciler.Hypervisor          = auditedDriver{}
	_ reconciler.Registrar           = auditedRegistry{}
	_ reconciler.FailureStore        = auditedRegistry{}
	_ reconciler.AddressReservations = auditedRegistry{}
)

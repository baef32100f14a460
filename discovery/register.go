package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Check is the health check registered with an instance, and the rollout's gate.
// Exactly one of HTTPPath and TCP is set.
type Check struct {
	// HTTPPath is requested as http://Address:Port+HTTPPath; 2xx is passing.
	HTTPPath string
	// TCP checks that Address:Port accepts connections.
	TCP bool
	// Interval between runs; required.
	Interval time.Duration
	// Timeout of one run; zero means Consul's default (10s).
	Timeout time.Duration
	// DeregisterCriticalAfter lets Consul remove an instance critical this long, the
	// safety net for a Drover that died before cleaning up. Zero disables it; Consul
	// reaps at most every 30s and treats values under a minute as a minute.
	DeregisterCriticalAfter time.Duration
}

// Registration is one instance of a service as Drover registers it.
type Registration struct {
	ID, Service, Address string
	Port                 int
	Tags                 []string
	Meta                 map[string]string
	Check                Check
	// Passing registers the check as passing instead of critical. Only for a caller
	// that has just run the very same check itself (Probe) and seen it pass: Consul
	// then keeps checking from there, without first waiting out its own interval.
	// It applies to a first registration only: registering an existing instance
	// again keeps its check's current status.
	Passing bool
}

func (r Registration) validate() error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("empty ID"))
	}
	if r.Service == "" {
		errs = append(errs, errors.New("empty service name"))
	}
	if r.Address == "" {
		errs = append(errs, errors.New("empty address"))
	}
	if r.Port < 1 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range 1..65535", r.Port))
	}
	c := r.Check
	switch {
	case c.HTTPPath == "" && !c.TCP:
		errs = append(errs, errors.New("no check: set check HTTPPath or TCP"))
	case c.HTTPPath != "" && c.TCP:
		errs = append(errs, errors.New("check has both HTTPPath and TCP"))
	case c.HTTPPath != "" && !strings.HasPrefix(c.HTTPPath, "/"):
		errs = append(errs, fmt.Errorf("check HTTPPath %q does not start with /", c.HTTPPath))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("check interval %v: must be positive", c.Interval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("check timeout %v: must not be negative", c.Timeout))
	}
	if c.DeregisterCriticalAfter < 0 {
		errs = append(errs, fmt.Errorf("check deregister-critical-after %v: must not be negative", c.DeregisterCriticalAfter))
	}
	return errors.Join(errs...)
}

func (r Registration) agentRegistration() *api.AgentServiceRegistration {
	hostPort := net.JoinHostPort(r.Address, strconv.Itoa(r.Port))
	check := &api.AgentServiceCheck{
		Name:     "drover " + r.Service + " health",
		Interval: r.Check.Interval.String(),
		// Explicit, so no instance counts as passing before its check has run and passed.
		Status: api.HealthCritical,
	}
	if r.Passing {
		check.Status = api.HealthPassing
	}
	if r.Check.Timeout > 0 {
		check.Timeout = r.Check.Timeout.String()
	}
	if r.Check.DeregisterCriticalAfter > 0 {
		check.DeregisterCriticalServiceAfter = r.Check.DeregisterCriticalAfter.String()
	}
	if r.Check.TCP {
		check.TCP = hostPort
	} else {
		check.HTTP = "http://" + hostPort + r.Check.HTTPPath
	}
	return &api.AgentServiceRegistration{
		ID:      r.ID,
		Name:    r.Service,
		Address: r.Address,
		Port:    r.Port,
		Tags:    r.Tags,
		Meta:    r.Meta,
		Check:   check,
	}
}

// Register adds the instance and its check to the local agent. Registering an ID
// again replaces it, checks included, so a retried pass is harmless.
func (c *Client) Register(ctx context.Context, r Registration) error {
	if err := r.validate(); err != nil {
		return fmt.Errorf("register %q: invalid registration: %w", r.ID, err)
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(cctx)
	if err := c.api.Agent().ServiceRegisterOpts(r.agentRegistration(), opts); err != nil {
		return fmt.Errorf("register %s (service %s): %w", r.ID, r.Service, c.classify(ctx, err))
	}
	c.log.Debug("registered instance", "service", r.Service, "instance", r.ID, "address", r.Address, "port", r.Port)
	return nil
}

// Deregister removes the instance and its checks from the local agent. An unknown ID
// is not an error: the goal is that the instance is gone.
func (c *Client) Deregister(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("deregister: empty instance ID")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	err := c.classify(ctx, c.api.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(cctx)))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("deregister %s: %w", id, err)
	}
	c.log.Debug("deregistered instance", "instance", id)
	return nil
}

// SetMaintenance puts the instance in (on) or out of (off) maintenance mode. In
// maintenance it leaves DNS and ?passing results, which is how Drover drains it.
func (c *Client) SetMaintenance(ctx context.Context, id string, on bool, reason string) error {
	if id == "" {
		return errors.New("set maintenance: empty instance ID")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(cctx)
	var err error
	if on {
		err = c.api.Agent().EnableServiceMaintenanceOpts(id, reason, q)
	} else {
		err = c.api.Agent().DisableServiceMaintenanceOpts(id, q)
	}
	if err != nil {
		return fmt.Errorf("set maintenance %s on %s: %w", onOff(on), id, c.classify(ctx, err))
	}
	c.log.Debug("set maintenance", "instance", id, "maintenance", on, "reason", reason)
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

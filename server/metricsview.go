package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/drover-dev/drover/reconciler"
)

// The series read from the View at each scrape: the fleet as it is, never stored.
var (
	descUp = prometheus.NewDesc("drover_status_up",
		"1 when this scrape could read the fleet's status, else 0 (the series below are then missing).", nil, nil)
	descFleet = prometheus.NewDesc("drover_fleet_info",
		"The fleet and the commit it acts on (always 1).", []string{"fleet", "revision", "ref", "tag"}, nil)
	descLeader = prometheus.NewDesc("drover_leader",
		"1 when this Drover is the fleet's leader (the one that acts), else 0.", nil, nil)
	descLastFetch = prometheus.NewDesc("drover_last_successful_fetch_timestamp_seconds",
		"When the desired state was last read from git successfully (Unix time).", nil, nil)
	descLastPass = prometheus.NewDesc("drover_last_successful_pass_timestamp_seconds",
		"When the last reconcile pass completed (Unix time).", nil, nil)
	descReplicas = prometheus.NewDesc("drover_service_replicas_desired",
		"Replicas the tracked commit wants, by service.", []string{"service"}, nil)
	descPhase = prometheus.NewDesc("drover_service_phase",
		"1 for the phase a service is in, 0 for the others.", []string{"service", "phase"}, nil)
	descHeld = prometheus.NewDesc("drover_service_revision_held",
		"1 when a service's revision failed and is held (not retried until a new commit or drover retry).", []string{"service"}, nil)
	descSuspended = prometheus.NewDesc("drover_service_suspended",
		"1 when a service is suspended (left exactly as it is).", []string{"service"}, nil)
	descRolloutPassing = prometheus.NewDesc("drover_rollout_vms_passing",
		"New VMs of the rollout under way that pass their health check, by service.", []string{"service"}, nil)
	descRolloutWanted = prometheus.NewDesc("drover_rollout_vms_wanted",
		"New VMs the rollout under way wants, by service.", []string{"service"}, nil)
	descVMs = prometheus.NewDesc("drover_vms",
		"Managed VMs, by service, version and hypervisor state.", []string{"service", "version", "state"}, nil)
	descInstances = prometheus.NewDesc("drover_instances",
		"Consul instances, by service and version.", []string{"service", "version"}, nil)
	descPassing = prometheus.NewDesc("drover_instances_passing",
		"Consul instances passing their health check, by service and version.", []string{"service", "version"}, nil)
)

var phases = []string{"converged", "rolling-out", "held", "suspended", "pruning"}

// statusCollector turns one FleetStatus, read with the scrape's context, into series.
// It is made per scrape and describes nothing (an unchecked collector): its label
// values come and go with the fleet.
type statusCollector struct {
	st  reconciler.FleetStatus
	err error
}

func (c statusCollector) Describe(chan<- *prometheus.Desc) {}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.err != nil {
		gauge(descUp, 0)
		return
	}
	st := c.st
	gauge(descUp, 1)
	gauge(descFleet, 1, st.Fleet, st.Revision, st.Ref, st.Tag)
	gauge(descLeader, bool01(st.Leader))
	if !st.LastFetch.IsZero() {
		gauge(descLastFetch, float64(st.LastFetch.UnixMilli())/1e3)
	}
	if !st.LastPass.IsZero() {
		gauge(descLastPass, float64(st.LastPass.UnixMilli())/1e3)
	}
	type vmKey struct{ version, state string }
	for _, svc := range st.Services {
		gauge(descReplicas, float64(svc.Replicas), svc.Name)
		for _, p := range phases {
			gauge(descPhase, bool01(svc.Phase == p), svc.Name, p)
		}
		gauge(descHeld, bool01(svc.Held != nil), svc.Name)
		gauge(descSuspended, bool01(svc.Suspended != nil), svc.Name)
		gauge(descRolloutPassing, float64(svc.Progress.Passing), svc.Name)
		gauge(descRolloutWanted, float64(svc.Progress.Wanted), svc.Name)
		seen := map[string]bool{}
		for _, v := range svc.Versions {
			if seen[v.Version] { // one series per label set, whatever the View says
				continue
			}
			seen[v.Version] = true
			gauge(descInstances, float64(v.Total), svc.Name, v.Version)
			gauge(descPassing, float64(v.Passing), svc.Name, v.Version)
		}
		vms := map[vmKey]int{}
		var order []vmKey
		for _, vm := range svc.VMs {
			k := vmKey{vm.Version, vm.State}
			if vms[k] == 0 {
				order = append(order, k)
			}
			vms[k]++
		}
		for _, k := range order {
			gauge(descVMs, float64(vms[k]), svc.Name, k.version, k.state)
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics gathers the hook and event series and, read now, the fleet's.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	st, err := s.cfg.View.FleetStatus(r.Context())
	if err != nil {
		s.log.Warn("metrics: read fleet status", "err", err)
	}
	now := prometheus.NewRegistry()
	now.MustRegister(statusCollector{st: st, err: err})
	promhttp.HandlerFor(prometheus.Gatherers{s.metrics.reg, now}, promhttp.HandlerOpts{
		ErrorLog:      slog2promLogger{s},
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}

type slog2promLogger struct{ s *Server }

func (l slog2promLogger) Println(v ...any) { l.s.log.Warn("metrics", "err", v) }

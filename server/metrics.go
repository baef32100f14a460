package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/drover-dev/drover/reconciler"
)

// Metrics holds the series the View cannot give: what happened during passes and
// fetches, reported through its Observe methods, and counts derived from events.
// Its methods are safe for concurrent use and never block. The reconciler and the
// sources declare their own one-method interfaces that these satisfy; cmd makes one
// with NewMetrics, hands it to them and to Config.Metrics.
type Metrics struct {
	reg *prometheus.Registry

	passDuration *prometheus.HistogramVec
	gateWait     *prometheus.HistogramVec
	rollouts     *prometheus.CounterVec
	rollbacks    *prometheus.CounterVec
	events       *prometheus.CounterVec
	gitErrors    prometheus.Counter
	gitBytes     prometheus.Counter
	imageErrors  prometheus.Counter
	imageBytes   prometheus.Counter
}

// NewMetrics makes the series, in a registry of their own (no global state).
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		passDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_pass_duration_seconds",
			Help:    "Time a reconcile pass took (observe, diff, plan; rollouts run after it in the background), by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"result"}),
		gateWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "drover_health_gate_wait_seconds",
			Help:    "Time new VMs waited at the health gate until they passed or the rollout gave up, by service and result.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"service", "result"}),
		rollouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_rollouts_total",
			Help: "Rollouts that ended, by service and result (succeeded or failed).",
		}, []string{"service", "result"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_rollbacks_total",
			Help: "Failed rollouts rolled back to the previous VMs, by service.",
		}, []string{"service"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_events_total",
			Help: "Fleet events seen by this Drover, by kind.",
		}, []string{"kind"}),
		gitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_git_fetch_errors_total",
			Help: "Exchanges with the git remote (ref listings and fetches) that failed.",
		}),
		gitBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_git_fetch_bytes_total",
			Help: "Bytes of packs received from the git remote (a poll that finds nothing new adds 0).",
		}),
		imageErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_image_download_errors_total",
			Help: "Golden image downloads and file:// copies that failed (including checksum mismatches).",
		}),
		imageBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_image_download_bytes_total",
			Help: "Bytes of golden images read into the cache (http(s) downloads and file:// copies).",
		}),
	}
	m.reg.MustRegister(m.passDuration, m.gateWait, m.rollouts, m.rollbacks, m.events,
		m.gitErrors, m.gitBytes, m.imageErrors, m.imageBytes,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that exist before anything happened, so a rate() has a start.
	for _, r := range []string{"ok", "error"} {
		m.passDuration.WithLabelValues(r)
	}
	return m
}

// ObservePass records one reconcile pass: how long it took and whether it failed.
func (m *Metrics) ObservePass(d time.Duration, err error) {
	m.passDuration.WithLabelValues(result(err, "ok", "error")).Observe(d.Seconds())
}

// ObserveGateWait records how long a service's new VMs waited at the health gate and
// whether they passed it.
func (m *Metrics) ObserveGateWait(service string, d time.Duration, passed bool) {
	r := "failed"
	if passed {
		r = "passed"
	}
	m.gateWait.WithLabelValues(service, r).Observe(d.Seconds())
}

// ObserveGitFetch records one fetch from the git server: the bytes received (also
// when it failed part way) and its error.
func (m *Metrics) ObserveGitFetch(bytes int64, err error) {
	m.gitBytes.Add(float64(max(bytes, 0)))
	if err != nil {
		m.gitErrors.Inc()
	}
}

// ObserveImageDownload records one golden image download: the bytes received and its
// error.
func (m *Metrics) ObserveImageDownload(bytes int64, err error) {
	m.imageBytes.Add(float64(max(bytes, 0)))
	if err != nil {
		m.imageErrors.Inc()
	}
}

func (m *Metrics) observeEvent(e reconciler.Event) {
	m.events.WithLabelValues(string(e.Kind)).Inc()
	switch e.Kind {
	case reconciler.EventRolloutSucceeded:
		m.rollouts.WithLabelValues(e.Service, "succeeded").Inc()
	case reconciler.EventRolloutFailed:
		m.rollouts.WithLabelValues(e.Service, "failed").Inc()
	case reconciler.EventRolledBack:
		m.rollbacks.WithLabelValues(e.Service).Inc()
	}
}

func result(err error, ok, bad string) string {
	if err != nil {
		return bad
	}
	return ok
}

// Package server is Drover's HTTP surface on --listen: the JSON API the CLI talks to
// (status, history, a live event stream, suspend/resume/retry/reconcile), Prometheus
// metrics at /metrics, and a live dashboard at / for people.
//
// It reads the reconciler only through reconciler.View and acts only through
// reconciler.Control; the reconciler never imports it. What the View cannot say (how
// long a pass took, bytes fetched) reaches the metrics through the hooks on Metrics,
// which cmd hands to the reconciler and the sources as their own small interfaces.
//
// Everything it shows may come from git (a version label, a reason) and is treated as
// hostile: html/template escapes it, JSON carries it as data, and the page's Content
// Security Policy allows no inline script.
package server

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/drover-dev/drover/reconciler"
)

// printStatus writes the fleet as a table (text) or as the API's JSON.
func printStatus(w io.Writer, st reconciler.FleetStatus, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	head := "fleet " + safe(st.Fleet)
	if st.Revision != "" {
		head += "  revision " + short(st.Revision)
	}
	if st.Ref != "" {
		head += " (" + safe(st.Ref)
		if st.Tag != "" {
			head += ", tag " + safe(st.Tag)
		}
		head += ")"
	}
	if st.Leader {
		head += "  leader"
	}
	if !st.LastPass.IsZero() {
		head += "  last pass " + st.LastPass.UTC().Format(time.RFC3339)
	}
	fmt.Fprintln(w, head)
	if st.Error != "" {
		fmt.Fprintln(w, "note: "+safe(st.Error))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tVERSION\tPASSING/TOTAL\tPHASE\tPROGRESS\tHELD\tSUSPENDED")
	var notes []string
	for _, s := range st.Services {
		version := safe(s.Version)
		if version == "" {
			version = "?"
		}
		held, suspended := "-", "-"
		if s.Held != nil {
			held = short(s.Held.Revision)
			notes = append(notes, fmt.Sprintf("%s: revision %s held since %s: %s", safe(s.Name), short(s.Held.Revision), s.Held.At.UTC().Format(time.RFC3339), safe(s.Held.Reason)))
		}
		if s.Suspended != nil {
			suspended = "yes"
			note := fmt.Sprintf("%s: suspended since %s", safe(s.Name), s.Suspended.At.UTC().Format(time.RFC3339))
			if s.Suspended.Reason != "" {
				note += ": " + safe(s.Suspended.Reason)
			}
			notes = append(notes, note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(s.Name), version, versionCounts(s.Versions), safe(s.Phase), progressCell(s), held, suspended)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

// versionCounts is "1.4.2 2/2, 1.4.1 1/2": passing/total per running version.
func versionCounts(vs []reconciler.VersionCount) string {
	if len(vs) == 0 {
		return "0/0"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		name := safe(v.Version)
		if name == "" {
			name = "?"
		}
		parts[i] = fmt.Sprintf("%s %d/%d", name, v.Passing, v.Total)
	}
	return strings.Join(parts, ", ")
}

// progressCell is a rollout's new VMs passing out of wanted, and for how long it runs.
func progressCell(s reconciler.ServiceStatus) string {
	p := s.Progress
	if p.Wanted == 0 {
		return "-"
	}
	out := fmt.Sprintf("%d/%d", p.Passing, p.Wanted)
	// Elapsed only while it rolls out: a converged service's VMs are merely old.
	if !p.Started.IsZero() && s.Phase == reconciler.PhaseRollingOut {
		out += " " + time.Since(p.Started).Round(time.Second).String()
	}
	return out
}

// eventPrinter writes events one line each: aligned text, or one JSON object a line.
type eventPrinter struct {
	w      io.Writer
	json   *json.Encoder
	header bool
}

func newEventPrinter(w io.Writer, format string) *eventPrinter {
	p := &eventPrinter{w: w}
	if format == "json" {
		p.json = json.NewEncoder(w)
	}
	return p
}

const eventLine = "%-20s  %-12s  %-18s  %-8s  %-10s  %s\n"

func (p *eventPrinter) print(ev reconciler.Event) {
	if p.json != nil {
		p.json.Encode(ev)
		return
	}
	if !p.header {
		fmt.Fprintf(p.w, eventLine, "TIME", "SERVICE", "EVENT", "REVISION", "VERSION", "VMS / REASON")
		p.header = true
	}
	svc := safe(ev.Service)
	if svc == "" {
		svc = "-"
	}
	detail := make([]string, 0, len(ev.VMs)+1)
	for _, vm := range ev.VMs {
		detail = append(detail, safe(vm))
	}
	what := strings.Join(detail, ",")
	if ev.Reason != "" {
		if what != "" {
			what += ": "
		}
		what += safe(ev.Reason)
	}
	fmt.Fprintf(p.w, eventLine, ev.Time.UTC().Format(time.RFC3339), svc, safe(string(ev.Kind)), orDash(short(ev.Revision)), orDash(safe(ev.Version)), what)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short is a commit's first 8 hex digits.
func short(rev string) string {
	rev = safe(rev)
	if len(rev) > 8 {
		return rev[:8]
	}
	return rev
}

// safe keeps what the server or Consul said from driving the terminal: control
// characters (escape sequences) become spaces.
func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

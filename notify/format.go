package notify

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"

	"github.com/drover-dev/drover/reconciler"
)

// Format is a notification body's shape.
type Format string

const (
	// FormatJSON is the event itself, as the API's history shows it.
	FormatJSON Format = "json"
	// FormatSlack is {"text": …}: Slack's incoming webhooks and the many chats that
	// copy them (Mattermost, Rocket.Chat, Discord's /slack endpoint).
	FormatSlack Format = "slack"
	// FormatMatrix is {"text": …, "html": …}: matrix-hookshot's generic webhooks.
	FormatMatrix Format = "matrix"
)

// ParseFormat checks a --notify-format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatJSON, FormatSlack, FormatMatrix:
		return f, nil
	}
	return "", fmt.Errorf("notify format %q: want json, slack or matrix", s)
}

func (f Format) body(ev reconciler.Event) ([]byte, error) {
	switch f {
	case FormatSlack:
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackEscape.Replace(Text(ev))})
	case FormatMatrix:
		return json.Marshal(struct {
			Text string `json:"text"`
			HTML string `json:"html"`
		}{Text(ev), HTML(ev)})
	}
	return json.Marshal(ev)
}

// slackEscape is Slack's own escaping: a version label from git must not become a
// <!channel> mention or a link.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Text is the event in one line for people:
// "[fleet] web: rollout failed, revision 1a2b3c4d, version 1.4.2, VMs web-…: reason".
func Text(ev reconciler.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ", ev.Fleet)
	if ev.Service != "" {
		b.WriteString(ev.Service + ": ")
	}
	b.WriteString(strings.ReplaceAll(string(ev.Kind), "_", " "))
	for _, d := range details(ev) {
		b.WriteString(", " + d)
	}
	if ev.Reason != "" {
		b.WriteString(": " + ev.Reason)
	}
	return b.String()
}

// HTML is Text with the fleet, service and kind in bold and everything escaped.
func HTML(ev reconciler.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ", html.EscapeString(ev.Fleet))
	if ev.Service != "" {
		fmt.Fprintf(&b, "<b>%s</b>: ", html.EscapeString(ev.Service))
	}
	fmt.Fprintf(&b, "<b>%s</b>", html.EscapeString(strings.ReplaceAll(string(ev.Kind), "_", " ")))
	for _, d := range details(ev) {
		b.WriteString(", " + html.EscapeString(d))
	}
	if ev.Reason != "" {
		b.WriteString(": " + html.EscapeString(ev.Reason))
	}
	return b.String()
}

func details(ev reconciler.Event) []string {
	var out []string
	if ev.Revision != "" {
		rev := ev.Revision
		if len(rev) > 8 {
			rev = rev[:8]
		}
		out = append(out, "revision "+rev)
	}
	if ev.Version != "" {
		out = append(out, "version "+ev.Version)
	}
	if len(ev.VMs) > 0 {
		out = append(out, "VMs "+strings.Join(ev.VMs, " "))
	}
	return out
}

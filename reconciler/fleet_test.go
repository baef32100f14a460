package reconciler

import (
	"strings"
	"testing"
)

func TestValidFleet(t *testing.T) {
	for _, good := range []string{"a", "prod", "homelab-2", "7dd2b76065eb", strings.Repeat("a", 63)} {
		if err := ValidFleet(good); err != nil {
			t.Errorf("ValidFleet(%q): %v, want nil", good, err)
		}
	}
	for _, tt := range []struct{ name, want string }{
		{"", "empty"},
		{"Prod", `character 'P' at 1`},
		{"-prod", `character '-' at 1`},
		{"prod-", `character '-' at 5`},
		{"pr_od", `character '_' at 3`},
		{"prod/eu", `character '/' at 5`},
		{strings.Repeat("a", 64), "more than 63"},
	} {
		if err := ValidFleet(tt.name); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidFleet(%q): got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

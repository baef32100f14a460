package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://alice:s3cret@git.lan/infra/fleet.git", "https://alice:xxxxx@git.lan/infra/fleet.git"},
		{"https://ghp_TOKEN123@github.com/o/r.git", "https://xxxxx@github.com/o/r.git"},
		{"https://git.lan/infra/fleet.git", "https://git.lan/infra/fleet.git"},
		{"ssh://git@git.lan/infra/fleet.git", "ssh://git@git.lan/infra/fleet.git"},
		{"https://images.lan/a.qcow2?token=abc&x=1", "https://images.lan/a.qcow2?token=xxxxx&x=1"},
		{"/srv/fleet", "/srv/fleet"},
		{"git@git.lan:infra/fleet.git", "git@git.lan:infra/fleet.git"},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStringAndError(t *testing.T) {
	base := fmt.Errorf("fetch https://bob:hunter2@git.lan/x.git: %w", fs.ErrNotExist)
	err := Error(base, "tok-abc")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("redacted error still shows the password: %s", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("redacted error lost its chain")
	}
	if got := Secrets("token tok-abc in text", "tok-abc", ""); strings.Contains(got, "tok-abc") {
		t.Errorf("Secrets left the secret: %s", got)
	}
	if Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
}

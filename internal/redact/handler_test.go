package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestHandlerMasksEveryPlace(t *testing.T) {
	const repo = "https://drover:hunter2-pass@git.lan/fleet.git"
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&buf, nil), URLSecrets(repo)))
	log = log.With("repo", repo)
	log.Info("fetch "+repo+" failed",
		"err", errors.New("git server said: bad password hunter2-pass"),
		slog.Group("g", "u", repo),
		"list", []string{repo})
	if strings.Contains(buf.String(), "hunter2-pass") {
		t.Errorf("the password reached the log:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "drover:xxxxx@git.lan") {
		t.Errorf("want the URL shown masked, got:\n%s", buf.String())
	}
}

func TestURLSecrets(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want int
	}{
		{"https://drover:hunter2-pass@git.lan/f.git", 3},
		{"https://ghp_abcdefghijklmnop1234@github.com/o/r.git", 1},
		{"https://git@git.lan/f.git", 0}, // a short user name is masked in URLs only
		{"ssh://git@git.lan/f.git", 0},
		{"/srv/fleet", 0},
	} {
		if got := URLSecrets(tc.url); len(got) != tc.want {
			t.Errorf("URLSecrets(%s) = %q, want %d secrets", tc.url, got, tc.want)
		}
	}
}

func TestSetHandlerMasksSecretsAddedLater(t *testing.T) {
	var buf bytes.Buffer
	set := NewSet()
	log := slog.New(SetHandler(slog.NewTextHandler(&buf, nil), set)).With("token", "rotated-t0ken-2")
	set.Add("rotated-t0ken-2")
	log.Info("server said rotated-t0ken-2 is bad")
	if strings.Contains(buf.String(), "rotated-t0ken-2") {
		t.Errorf("a secret added after the logger was made reached the log:\n%s", buf.String())
	}
}

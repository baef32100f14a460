package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNotifyFlags(t *testing.T) {
	const secret = "T0/B0/hooksecret"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not http", []string{"--notify-url", "ftp://hooks.example/" + secret}, "--notify-url: notify url #1 ftp://hooks.example/xxxxx: want an http:// or https:// URL"},
		{"second bad", []string{"--notify-url", "https://hooks.example/" + secret, "--notify-url", "file:///etc/passwd"}, "notify url #2 file://"},
		{"no host", []string{"--notify-url", "https:///" + secret}, "no host"},
		{"format", []string{"--notify-url", "https://hooks.example/x", "--notify-format", "xml"}, `--notify-format: notify format "xml": want json, slack or matrix`},
		{"secret without url", []string{"--notify-secret-file", "/x"}, "--notify-secret-file needs --notify-url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"run", "--repo", t.TempDir()}, tc.args...)...)
			if code != exitUsage || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, errs, exitUsage, tc.want)
			}
			if strings.Contains(errs, "hooksecret") {
				t.Errorf("stderr shows the URL's secret: %s", errs)
			}
		})
	}
	t.Setenv("DROVER_NOTIFY_URL", "https://a.example/1,https://b.example/2")
	code, _, errs := runCLI(t, "run", "--repo", t.TempDir(), "--notify-format", "xml")
	if code != exitUsage || !strings.Contains(errs, "--notify-format") {
		t.Errorf("DROVER_NOTIFY_URL: exit %d, %q", code, errs)
	}
}

func TestNewNotifierSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	urls := stringList{"https://hooks.example/x"}
	if n, err := newNotifier(notifyOptions{urls: urls, format: "json", secretFile: write("ok", "0123456789abcdef\n")}, nil); err != nil || n == nil {
		t.Errorf("16-byte secret: got %v, %v", n, err)
	}
	if _, err := newNotifier(notifyOptions{urls: urls, format: "json", secretFile: write("short", "tooshort")}, nil); err == nil || !strings.Contains(err.Error(), "at least 16 bytes") || strings.Contains(err.Error(), "tooshort") {
		t.Errorf("short secret: got %v", err)
	}
	if _, err := newNotifier(notifyOptions{urls: urls, format: "json", secretFile: dir}, nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as secret: got %v", err)
	}
	if n, err := newNotifier(notifyOptions{format: "json"}, nil); n != nil || err != nil {
		t.Errorf("no URL: got %v, %v; want nil, nil", n, err)
	}
}

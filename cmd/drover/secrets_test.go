package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/testenv"
)

// TestRepoCredentialsNeverShown runs the real binary against a git server with basic
// auth, the password in --repo as operators do with tokens, and makes fetches fail in
// several ways. The password must appear in no log line, no /status answer and no
// Consul KV value Drover writes.
func TestRepoCredentialsNeverShown(t *testing.T) {
	const password = "pw-7c1e9a3b5d2f"
	consul := testenv.Consul(t)
	root := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(root, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "empty fleet")
	srv := testenv.ServeGitHTTP(t, root, testenv.GitHTTPOptions{User: "ci", Password: password})
	url := srv.AuthRepoURL("fleet")
	if !strings.Contains(url, password) {
		t.Fatalf("AuthRepoURL %s does not carry the password", url)
	}
	bin := buildCrashDrover(t)
	args := func(repoURL string, extra ...string) []string {
		return append([]string{"run", "--repo", repoURL, "--state-dir", testenv.StateDir(t), "--consul", consul.Addr,
			"--driver", "qemu", "--interval", "1s", "--log-format", "json", "--log-level", "debug"}, extra...)
	}
	mustNotShow := func(t *testing.T, where, text string, secrets ...string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the credential %q:\n%s", where, s, text)
			}
		}
	}

	t.Run("failing once runs", func(t *testing.T) {
		const wrong = "pw-wrong-0a9b8c7d"
		for _, tt := range []struct {
			name, repo string
			extra      []string
		}{
			{"unknown branch", url, []string{"--branch", "no-such-branch"}},
			{"wrong password", strings.Replace(url, password, wrong, 1), nil},
			{"server error", url, nil},
		} {
			t.Run(tt.name, func(t *testing.T) {
				if tt.name == "server error" {
					srv.FailNext(1000)
					defer srv.FailNext(0)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				out, err := exec.CommandContext(ctx, bin, args(tt.repo, append([]string{"--once", "--listen", ""}, tt.extra...)...)...).CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != exitFail {
					t.Fatalf("run --once: %v, want exit %d\n%s", err, exitFail, out)
				}
				if !strings.Contains(string(out), "127.0.0.1") {
					t.Errorf("the error does not name the repository's host:\n%s", out)
				}
				mustNotShow(t, "stderr", string(out), password, wrong)
			})
		}
	})

	t.Run("daemon", func(t *testing.T) {
		const token = "status-token-31d4c9"
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startLeaderProc(t, bin, "drover", args(url, "--listen", "127.0.0.1:0", "--listen-token-file", tokenFile)...)
		p.waitLog(t, `"tracking revision"`, time.Minute)
		statusURL := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+)/status"`).FindStringSubmatch(p.log())
		if statusURL == nil {
			t.Fatalf("no status endpoint logged:\n%s", p.log())
		}
		// Every fetch fails from now on: the error, naming the repository, goes to
		// the log and to /status.
		srv.FailNext(1 << 30)
		defer srv.FailNext(0)
		p.waitLog(t, `"reading desired state failed`, time.Minute)
		if code, _ := get(t, statusURL[1]+"/status", ""); code != http.StatusUnauthorized {
			t.Errorf("/status without the token: %d, want 401", code)
		}
		if code, _ := get(t, statusURL[1]+"/healthz", ""); code != http.StatusOK {
			t.Errorf("/healthz without the token: %d, want 200", code)
		}
		var status struct{ Error string }
		code, body := get(t, statusURL[1]+"/status", token)
		if code != http.StatusOK {
			t.Fatalf("/status with the token: %d, want 200\n%s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &status); err != nil || status.Error == "" {
			t.Fatalf("/status: %v, want a JSON status with the fetch error:\n%s", err, body)
		}
		mustNotShow(t, "/status", body, password)

		cl, err := api.NewClient(&api.Config{Address: consul.Addr})
		if err != nil {
			t.Fatal(err)
		}
		pairs, _, err := cl.KV().List("drover/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(pairs) == 0 {
			t.Fatal("no key under drover/ in Consul: want at least the leader lock")
		}
		for _, kv := range pairs {
			mustNotShow(t, "consul key "+kv.Key, kv.Key+"="+string(kv.Value), password)
		}
		services, err := cl.Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		for id, s := range services {
			raw, _ := json.Marshal(s)
			mustNotShow(t, "consul service "+id, string(raw), password)
		}
		p.stop(t)
		mustNotShow(t, "the log", p.log(), password)
		if !strings.Contains(p.log(), srv.URL[len("http://"):]) {
			t.Errorf("the log never names the repository's host %s:\n%s", srv.URL, p.log())
		}
	})
}

// get fetches url, with token as a bearer token when set.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

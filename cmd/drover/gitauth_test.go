package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/drover-dev/drover/testenv"
)

// TestGitTokenFileNeverShown runs the real binary against git http-backend over TLS
// (a CA of the test's own, --git-ca-file) with the token in --git-token-file. The
// server's token is then rotated: the server, a careless one, quotes the stale token
// in its refusal. Neither token may reach a log line, /status or Consul; once the file
// holds the new token the same process fetches the next commit, without a restart.
func TestGitTokenFileNeverShown(t *testing.T) {
	const oldToken, newToken = "tok-old-6a5b4c3d2e", "tok-new-9f8e7d6c5b"
	consul := testenv.Consul(t)
	root := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(root, "fleet"))
	if err != nil {
		t.Fatal(err)
	}
	repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n"}, "empty fleet")
	srv := testenv.ServeGitHTTP(t, root, testenv.GitHTTPOptions{User: "drover", Password: oldToken, TLS: true, EchoCredentials: true})
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken := func(tok string) {
		if err := os.WriteFile(tokenFile+".new", []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tokenFile+".new", tokenFile); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(oldToken)
	const listenToken = "listen-token-0c9d8e7f"
	listenFile := filepath.Join(t.TempDir(), "listen-token")
	if err := os.WriteFile(listenFile, []byte(listenToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildCrashDrover(t)
	p := startLeaderProc(t, bin, "drover", "run", "--repo", srv.RepoURL("fleet"), "--state-dir", testenv.StateDir(t), "--consul", consul.Addr,
		"--driver", "qemu", "--interval", "1s", "--log-format", "json", "--log-level", "debug",
		"--git-username", "drover", "--git-token-file", tokenFile, "--git-ca-file", srv.CA.CertFile,
		"--listen", "127.0.0.1:0", "--listen-token-file", listenFile)
	p.waitLog(t, `"tracking revision"`, time.Minute)
	statusURL := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+)/status"`).FindStringSubmatch(p.log())
	if statusURL == nil {
		t.Fatalf("no status endpoint logged:\n%s", p.log())
	}

	srv.SetPassword("drover", newToken)
	p.waitLog(t, "git authentication failed", time.Minute)
	code, body := get(t, statusURL[1]+"/status", listenToken)
	var status struct{ Error string }
	if err := json.Unmarshal([]byte(body), &status); code != http.StatusOK || err != nil || !strings.Contains(status.Error, "token in "+tokenFile) {
		t.Errorf("/status: %d %v, want the authentication error naming the token file:\n%s", code, err, body)
	}
	if !strings.Contains(status.Error, "with password xxxxx") {
		t.Errorf("/status error %q: want the server's quote of the token, masked", status.Error)
	}

	writeToken(newToken)
	second := repo.Commit(t, map[string]string{"fleet.yaml": "services: []\n# second\n"}, "second")
	p.waitLog(t, `"revision":"`+second+`"`, time.Minute)

	cl, err := api.NewClient(&api.Config{Address: consul.Addr})
	if err != nil {
		t.Fatal(err)
	}
	pairs, _, err := cl.KV().List("drover/", nil)
	if err != nil {
		t.Fatal(err)
	}
	var kv strings.Builder
	for _, pair := range pairs {
		kv.WriteString(pair.Key + "=" + string(pair.Value) + "\n")
	}
	p.stop(t)
	for where, text := range map[string]string{"the log": p.log(), "/status": body, "Consul KV": kv.String()} {
		for _, secret := range []string{oldToken, newToken, listenToken} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows the secret %q:\n%s", where, secret, text)
			}
		}
	}
}

package sources

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"

	"github.com/drover-dev/drover/testenv"
)

// filesContaining lists the files under dir whose bytes contain secret.
func filesContaining(t *testing.T, dir, secret string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

// A token in the repository URL (https://user:token@host/...) works for fetching and
// is never shown: not in errors, logs, Config, DisplayURL, nor in the clone's
// .git/config under the state directory.
func TestGitCredentialsNeverShown(t *testing.T) {
	const user, password = "drover", "s3cret-T0ken-9f2c"
	r := newTestRepo(t)
	want := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	srv := testenv.ServeGitHTTP(t, filepath.Dir(r.dir), testenv.GitHTTPOptions{User: user, Password: password})
	name := filepath.Base(r.dir)
	url := srv.AuthRepoURL(name)
	if !strings.Contains(url, password) {
		t.Fatalf("test URL %s carries no password", url)
	}

	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	state := t.TempDir()
	dir := filepath.Join(state, "git")
	ctx := context.Background()
	var shown []string // everything the source returned or printed
	check := func(what string) {
		t.Helper()
		for _, s := range append(shown, logs.String()) {
			if strings.Contains(s, password) {
				t.Errorf("%s: the password is shown in %q", what, s)
			}
		}
		if files := filesContaining(t, state, password); len(files) > 0 {
			t.Errorf("%s: the password is written in %v", what, files)
		}
	}

	g, err := NewGit(GitConfig{URL: url, Dir: dir}, log)
	if err != nil {
		t.Fatalf("NewGit: %v", err)
	}
	rev, err := g.Read(ctx)
	if err != nil {
		t.Fatalf("Read with credentials in the URL: %v", err)
	}
	if rev.Commit != want || !reflect.DeepEqual(serviceNames(rev.Fleet), []string{"web"}) {
		t.Fatalf("Read = %s %v, want %s [web]", rev.Commit, serviceNames(rev.Fleet), want)
	}
	if got, wantURL := g.DisplayURL(), srv.URL[:len("http://")]+user+":xxxxx@"+srv.URL[len("http://"):]+"/"+name; got != wantURL {
		t.Errorf("DisplayURL() = %q, want %q", got, wantURL)
	}
	shown = append(shown, g.DisplayURL(), g.Config().URL)
	check("successful read")

	// The server fails: the error names the repository, without the password.
	srv.FailNext(1)
	_, err = g.Read(ctx)
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), g.DisplayURL()) {
		t.Errorf("Read with the server failing = %v, want ErrFetch naming %s", err, g.DisplayURL())
	}
	shown = append(shown, err.Error())
	check("server failure")

	// A wrong password is refused, and not shown either.
	const wrong = "wr0ng-Passw0rd-77"
	bad, err := NewGit(GitConfig{URL: strings.Replace(url, password, wrong, 1), Dir: dir}, log)
	if err != nil {
		t.Fatalf("NewGit on the same clone with another password (a rotated token): %v", err)
	}
	_, err = bad.Read(ctx)
	if err == nil || strings.Contains(err.Error(), wrong) || strings.Contains(logs.String(), wrong) {
		t.Errorf("Read with a wrong password = %v; want an error that does not show it (logs: %s)", err, logs)
	}
	if files := filesContaining(t, state, wrong); len(files) > 0 {
		t.Errorf("the wrong password is written in %v", files)
	}

	// A URL that does not parse is not quoted with its password.
	_, err = NewGit(GitConfig{URL: "https://" + user + ":" + password + "@host:port/fleet.git"}, log)
	if err == nil {
		t.Fatalf("NewGit with an invalid port succeeded")
	}
	shown = append(shown, err.Error())
	check("invalid URL")
}

// A clone made by an older Drover holds the URL with its token in .git/config: it is
// rewritten without it, and fetching still works.
func TestGitScrubsCredentialsFromOldClone(t *testing.T) {
	const user, password = "drover", "s3cret-T0ken-0ld1"
	r := newTestRepo(t)
	want := r.commit(t, map[string]*string{"fleet.yaml": ptr("services:\n" + service("web"))})
	srv := testenv.ServeGitHTTP(t, filepath.Dir(r.dir), testenv.GitHTTPOptions{User: user, Password: password})
	url := srv.AuthRepoURL(filepath.Base(r.dir))
	dir := filepath.Join(t.TempDir(), "git")
	old, err := git.PlainInit(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	if files := filesContaining(t, dir, password); len(files) == 0 {
		t.Fatalf("setup: the old clone does not hold the password")
	}

	g, err := NewGit(GitConfig{URL: url, Dir: dir}, nil)
	if err != nil {
		t.Fatalf("NewGit on an old clone: %v", err)
	}
	if files := filesContaining(t, dir, password); len(files) > 0 {
		t.Errorf("the password is still written in %v", files)
	}
	if commit, err := g.Fetch(context.Background()); err != nil || commit != want {
		t.Errorf("Fetch = %s, %v; want %s", commit, err, want)
	}
}

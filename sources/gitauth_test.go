package sources

import (
	"reflect"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

func TestSplitCredentials(t *testing.T) {
	tests := []struct {
		raw     string
		url     string
		auth    *githttp.BasicAuth
		display string
		secrets []string
	}{
		{"https://drover:t0ken-abc@git.lan/fleet.git", "https://git.lan/fleet.git",
			&githttp.BasicAuth{Username: "drover", Password: "t0ken-abc"}, "https://drover:xxxxx@git.lan/fleet.git", []string{"t0ken-abc"}},
		{"https://ghp_T0KEN@git.lan/fleet.git", "https://git.lan/fleet.git",
			&githttp.BasicAuth{Username: "ghp_T0KEN"}, "https://xxxxx@git.lan/fleet.git", []string{"ghp_T0KEN"}},
		{"http://u:p%40ss%2Fword@127.0.0.1:8080/r", "http://127.0.0.1:8080/r",
			&githttp.BasicAuth{Username: "u", Password: "p@ss/word"}, "http://u:xxxxx@127.0.0.1:8080/r", []string{"p@ss/word", "p%40ss%2Fword"}},
		{"https://git.lan/fleet.git", "https://git.lan/fleet.git", nil, "https://git.lan/fleet.git", nil},
		{"ssh://git@git.lan/fleet.git", "ssh://git@git.lan/fleet.git", nil, "ssh://git@git.lan/fleet.git", nil},
		{"git://git.lan/fleet.git", "git://git.lan/fleet.git", nil, "git://git.lan/fleet.git", nil},
		{"/srv/fleet", "/srv/fleet", nil, "/srv/fleet", nil},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got := splitCredentials(tt.raw)
			var auth *githttp.BasicAuth
			if got.auth != nil {
				auth = got.auth.(*githttp.BasicAuth)
			}
			if got.url != tt.url || !reflect.DeepEqual(auth, tt.auth) || got.display != tt.display || !reflect.DeepEqual(got.secrets, tt.secrets) {
				t.Errorf("splitCredentials(%q) = url %q auth %+v display %q secrets %q;\nwant url %q auth %+v display %q secrets %q",
					tt.raw, got.url, auth, got.display, got.secrets, tt.url, tt.auth, tt.display, tt.secrets)
			}
		})
	}
}

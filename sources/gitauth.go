package sources

import (
	"net/url"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/drover-dev/drover/internal/redact"
)

// remote is where a Git fetches from, with any credential the operator put in the URL
// taken out of it: the URL without them goes to go-git and into the clone's
// .git/config, the credential goes to go-git as an AuthMethod, and everything shown
// (logs, errors, Config) uses display.
type remote struct {
	url     string               // the URL without credentials
	auth    transport.AuthMethod // nil when the URL has none
	display string               // the URL as configured, credentials masked
	secrets []string             // credential strings to mask in messages from go-git
}

// minSecretLen keeps a very short password from masking every occurrence of its
// letters in messages; URL patterns are masked whatever the password.
const minSecretLen = 4

// splitCredentials takes the user info out of an http(s) URL. Other URLs are kept as
// they are: git:// has no authentication, ssh:// names a user, not a secret, and a
// local path has neither.
func splitCredentials(raw string) remote {
	r := remote{url: raw, display: redact.URL(raw)}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || (u.Scheme != "http" && u.Scheme != "https") {
		return r
	}
	user := u.User.Username()
	password, hasPassword := u.User.Password()
	// go-git does the same with a URL's user info: basic authentication, a bare
	// user being a token (https://TOKEN@host).
	r.auth = &githttp.BasicAuth{Username: user, Password: password}
	// The secret, decoded and as written in the URL (percent-encoded).
	escaped := strings.TrimSuffix(u.User.String(), "@")
	secret := user
	if hasPassword {
		secret = password
		escaped = escaped[strings.IndexByte(escaped, ':')+1:]
	}
	if len(secret) >= minSecretLen {
		r.secrets = append(r.secrets, secret)
	}
	if escaped != secret && len(escaped) >= minSecretLen {
		r.secrets = append(r.secrets, escaped)
	}
	u.User = nil
	r.url = u.String()
	return r
}

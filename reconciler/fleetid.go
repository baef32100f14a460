package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"strings"
)

// FleetID is a short, stable name for the fleet a Drover tracks, for when the operator
// names none. Equivalent spellings of the same fleet (a relative or absolute local
// path, a trailing slash, ./fleet.yaml) give the same ID, so two Drovers started
// differently still share one lock and one set of VMs. Credentials in the repository
// URL are not part of it: rotating a token must not orphan the fleet's VMs.
func FleetID(repo, branch, path string) string {
	h := sha256.New()
	for _, part := range []string{canonicalRepo(repo), branch, filepath.ToSlash(filepath.Clean(path))} {
		h.Write([]byte(part))
		h.Write([]byte{0}) // no two (repo, branch, path) triples hash the same bytes
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func canonicalRepo(repo string) string {
	repo = strings.TrimRight(repo, "/")
	if strings.Contains(repo, "://") {
		return withoutCredentials(repo)
	}
	// scp-like git syntax, user@host:path: a colon before any slash.
	if i := strings.Index(repo, ":"); i > 0 && !strings.Contains(repo[:i], "/") {
		return repo
	}
	if abs, err := filepath.Abs(repo); err == nil {
		return abs
	}
	return repo
}

// withoutCredentials drops the user info of a URL that carries a secret in it: a
// password, or a bare token in the user name (https://TOKEN@host/…). An ssh user name
// (ssh://git@host/…) names an account, not a secret, and stays, so fleets tracking ssh
// URLs keep the IDs they always had.
func withoutCredentials(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, hasPassword := u.User.Password(); !hasPassword && u.Scheme == "ssh" {
		return raw
	}
	u.User = nil
	return u.String()
}

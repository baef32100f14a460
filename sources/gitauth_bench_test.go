package sources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-dev/drover/testenv"
)

// BenchmarkCallAuth is what reading the credentials again costs each call to the
// remote (twice a poll: the ref listing and, when something changed, the fetch).
func BenchmarkCallAuth(b *testing.B) {
	key := testenv.NewSSHKey(b, "")
	hosts := []string{}
	for i := range 100 { // a known_hosts file of a hundred hosts
		hosts = append(hosts, "host-"+string(rune('a'+i%26))+".lan "+mustPublic(b, key))
	}
	knownHosts := testenv.WriteKnownHosts(b, hosts...)
	token := filepath.Join(b.TempDir(), "token")
	writeSecretB(b, token, "t0ken-abcdef")
	for _, bb := range []struct {
		name string
		cfg  GitConfig
	}{
		{"ssh key and known_hosts", GitConfig{URL: "ssh://git@host-a.lan/fleet.git", Auth: GitAuth{SSHKeyFile: key.PrivateFile, KnownHostsFile: knownHosts}}},
		{"token file", GitConfig{URL: "https://git.lan/fleet.git", Auth: GitAuth{TokenFile: token}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			g, err := NewGit(bb.cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, _, err := g.callAuth(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustPublic(b *testing.B, key testenv.SSHKey) string {
	fields := strings.Fields(key.Public)
	if len(fields) < 2 {
		b.Fatalf("public key %q", key.Public)
	}
	return fields[0] + " " + fields[1]
}

func writeSecretB(b *testing.B, path, content string) {
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
}

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// fakeAgent answers like qemu-guest-agent on a unix socket: guest-sync with its id, then
// reply to guest-network-get-interfaces. It stands in for a guest image that runs one.
func fakeAgent(t *testing.T, reply string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qga.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					var cmd struct {
						Execute   string
						Arguments struct{ ID int64 }
					}
					if json.Unmarshal(sc.Bytes(), &cmd) != nil {
						return
					}
					switch cmd.Execute {
					case "guest-sync":
						// A stale line first, as an abandoned exchange leaves.
						c.Write([]byte(`{"return": 1}` + "\n"))
						b, _ := json.Marshal(map[string]int64{"return": cmd.Arguments.ID})
						c.Write(append(b, '\n'))
					case "guest-network-get-interfaces":
						if reply != "" {
							c.Write([]byte(reply + "\n"))
						}
					}
				}
			}()
		}
	}()
	return sock
}

func TestAgentAddress(t *testing.T) {
	const mac = "52:54:00:01:02:03"
	ifaces := `{"return":[{"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1"}]},` +
		`{"name":"eth1","hardware-address":"52:54:00:ff:ff:ff","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"198.18.0.99"}]},` +
		`{"name":"eth0","hardware-address":"52:54:00:01:02:03","ip-addresses":[{"ip-address-type":"ipv6","ip-address":"fe80::1"},{"ip-address-type":"ipv4","ip-address":"169.254.0.5"},{"ip-address-type":"ipv4","ip-address":"198.18.0.120"}]}]}`
	tests := []struct {
		name, reply, want, err string
	}{
		{"the NIC's own ipv4", ifaces, "198.18.0.120", ""},
		{"no address yet", `{"return":[{"name":"eth0","hardware-address":"52:54:00:01:02:03"}]}`, "", ""},
		{"agent error", `{"error":{"class":"GenericError","desc":"no"}}`, "", "guest agent: no"},
		{"garbage", `not json`, "", "guest agent: reply"},
		{"no agent in the guest", "", "", "i/o timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agentAddress(context.Background(), fakeAgent(t, tc.reply), mac)
			if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("want %q, error containing %q; got %q, %v", tc.want, tc.err, got, err)
			}
		})
	}
}

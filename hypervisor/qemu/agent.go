package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"
)

// A bridged VM gets a virtio-serial port for the QEMU guest agent, so an image that
// runs qemu-guest-agent can report its addresses when the host's neighbour table does
// not know them yet. Everything the agent says comes from the guest: the exchange is
// bounded in time and size, and only an IPv4 address on the VM's own MAC is taken.

// SourceAgent names the guest agent as an address source.
const SourceAgent = "the guest agent"

// agentTimeout bounds one exchange: an image without the agent never answers, and List
// must not wait on it.
const agentTimeout = 300 * time.Millisecond

// maxAgentReply bounds what is read of the agent's reply.
const maxAgentReply = 64 << 10

// agentArgs are the QEMU arguments of the agent's channel at socket.
func agentArgs(socket string) []string {
	return []string{
		"-chardev", "socket,id=qga0,path=" + optEscape(socket) + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vserial0",
		"-device", "virtserialport,bus=vserial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
	}
}

// agentAddress asks the guest agent at socket for the IPv4 address of the NIC with mac.
// "" and no error when the agent has none to give; an error when it does not answer.
func agentAddress(ctx context.Context, socket, mac string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("guest agent: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// guest-sync first: a reply left over from an earlier, abandoned exchange must not
	// be taken for this one's.
	id := time.Now().UnixNano() & 0x7fffffff
	if _, err := fmt.Fprintf(conn, `{"execute":"guest-sync","arguments":{"id":%d}}`+"\n"+`{"execute":"guest-network-get-interfaces"}`+"\n", id); err != nil {
		return "", fmt.Errorf("guest agent: %w", err)
	}
	r := bufio.NewReader(io.LimitReader(conn, maxAgentReply))
	synced := false
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return "", fmt.Errorf("guest agent: %w", err)
		}
		if !synced {
			var sync struct{ Return int64 }
			if json.Unmarshal(line, &sync) == nil && sync.Return == id {
				synced = true
			}
			continue
		}
		var reply struct {
			Return []struct {
				HardwareAddress string `json:"hardware-address"`
				IPAddresses     []struct {
					Type    string `json:"ip-address-type"`
					Address string `json:"ip-address"`
				} `json:"ip-addresses"`
			}
			Error *struct{ Desc string }
		}
		if err := json.Unmarshal(line, &reply); err != nil {
			return "", fmt.Errorf("guest agent: reply: %w", err)
		}
		if reply.Error != nil {
			return "", fmt.Errorf("guest agent: %s", truncate(reply.Error.Desc, 200))
		}
		for _, nic := range reply.Return {
			if !strings.EqualFold(nic.HardwareAddress, mac) {
				continue
			}
			for _, a := range nic.IPAddresses {
				ip, err := netip.ParseAddr(a.Address)
				if err == nil && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() {
					return ip.String(), nil
				}
			}
		}
		return "", nil
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

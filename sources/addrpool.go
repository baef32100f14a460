package sources

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxPoolSize bounds `network.addresses`: an allocator walks the pool, and no fleet on
// one host needs more than a /16 of guests.
const MaxPoolSize = 1 << 16

// Pool is a static address pool, `network.addresses`: every IPv4 address from First to
// Last, both included.
type Pool struct {
	First, Last netip.Addr
}

// ParsePool reads a pool written as a range ("198.18.0.10-198.18.0.99") or a CIDR
// ("198.18.0.0/26"; its network and broadcast addresses are left out when it has more
// than two). IPv4 only: a guest's IPv6 address comes from router advertisements.
func ParsePool(s string) (Pool, error) {
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := parseV4(strings.TrimSpace(first))
		if err != nil {
			return Pool{}, fmt.Errorf("range %q: first address: %w", s, err)
		}
		b, err := parseV4(strings.TrimSpace(last))
		if err != nil {
			return Pool{}, fmt.Errorf("range %q: last address: %w", s, err)
		}
		if b.Less(a) {
			return Pool{}, fmt.Errorf("range %q: last address %s is before the first %s", s, b, a)
		}
		return Pool{First: a, Last: b}, nil
	}
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return Pool{}, fmt.Errorf("cidr %q: %w", s, err)
		}
		if !pfx.Addr().Is4() {
			return Pool{}, fmt.Errorf("cidr %q: want IPv4", s)
		}
		if pfx.Masked() != pfx {
			return Pool{}, fmt.Errorf("cidr %q has host bits set: did you mean %s?", s, pfx.Masked())
		}
		first, last := prefixBounds(pfx)
		if pfx.Bits() < 31 {
			first, last = first.Next(), last.Prev()
		}
		return Pool{First: first, Last: last}, nil
	}
	a, err := parseV4(s)
	if err != nil {
		return Pool{}, fmt.Errorf("%q: want a range such as 198.18.0.10-198.18.0.99 or a CIDR such as 198.18.0.0/26: %w", s, err)
	}
	return Pool{First: a, Last: a}, nil
}

func parseV4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s is not IPv4", s)
	}
	return a, nil
}

// prefixBounds are the lowest and highest address of pfx.
func prefixBounds(pfx netip.Prefix) (netip.Addr, netip.Addr) {
	first := pfx.Masked().Addr()
	b := first.As4()
	n := v4(b) | (1<<(32-pfx.Bits()) - 1)
	return first, fromV4(n)
}

func v4(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromV4(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// Size is how many addresses the pool holds.
func (p Pool) Size() int { return int(v4(p.Last.As4())-v4(p.First.As4())) + 1 }

// Contains reports whether a is in the pool.
func (p Pool) Contains(a netip.Addr) bool {
	return a.Is4() && !a.Less(p.First) && !p.Last.Less(a)
}

// At is the i-th address of the pool, from 0.
func (p Pool) At(i int) netip.Addr { return fromV4(v4(p.First.As4()) + uint32(i)) }

// Index is a's place in the pool, or -1.
func (p Pool) Index(a netip.Addr) int {
	if !p.Contains(a) {
		return -1
	}
	return int(v4(a.As4()) - v4(p.First.As4()))
}

func (p Pool) String() string {
	if p.First == p.Last {
		return p.First.String()
	}
	return p.First.String() + "-" + p.Last.String()
}

// Pool is the parsed `network.addresses`; false when the service uses DHCP. Parsing
// validated it, so an error cannot happen for a parsed fleet.
func (n Network) Pool() (Pool, bool) {
	if n.Addresses == "" {
		return Pool{}, false
	}
	p, err := ParsePool(n.Addresses)
	return p, err == nil
}

package connect

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrAddressNotAllowed is what a namespaced ScimTarget gets when its endpoint or token URL
// resolves to an address it may not reach. The message is fixed: naming the address, the port
// or what a dial or TLS handshake found would turn the target's status into a scanner of the
// operator's network.
var ErrAddressNotAllowed = errors.New("endpoint address is not allowed for a namespaced ScimTarget " +
	"(loopback, link-local or private ranges are refused; see --namespaced-target-allowed-cidrs)")

// DefaultDeniedCIDRs are the private and cluster ranges a namespaced ScimTarget may not reach
// unless --namespaced-target-allowed-cidrs allows them: RFC 1918, carrier-grade NAT (often
// the pod or service network) and IPv6 unique-local addresses.
var DefaultDeniedCIDRs = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
	// Ranges some clusters use for pods and services, benchmarking and IETF protocol
	// assignments, the reserved class E, and site-local IPv6.
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("fec0::/10"),
}

// alwaysDenied are refused whatever --namespaced-target-denied-cidrs says (only an explicit
// allowance reaches them): "this network", limited broadcast and the NAT64 prefix are checked
// here, the rest (loopback, link-local, unspecified, multicast) by netip's predicates.
var alwaysDenied = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("255.255.255.255/32"),
	// IPv6 forms that carry an IPv4 address (local-use NAT64, IPv4-compatible, 6to4, Teredo):
	// refused outright rather than unwrapped.
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
}

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses reach the IPv4 address in
// their last 32 bits, which is judged instead.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// AddressGuard decides which IP addresses the operator may dial for a namespaced ScimTarget, a
// URL a tenant chose. It judges the address actually dialled, after DNS resolution, so a name
// that resolves (or rebinds) to an internal address is refused too.
type AddressGuard struct {
	allowed []netip.Prefix
	denied  []netip.Prefix
}

// NewAddressGuard refuses loopback, link-local, unspecified and multicast addresses, and the
// denied ranges (DefaultDeniedCIDRs when denied is nil), except what allowed contains.
func NewAddressGuard(allowed, denied []netip.Prefix) *AddressGuard {
	if denied == nil {
		denied = DefaultDeniedCIDRs
	}
	return &AddressGuard{allowed: allowed, denied: denied}
}

// Allows reports whether addr may be dialled.
func (g *AddressGuard) Allows(addr netip.Addr) bool {
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, p := range g.allowed {
		if p.Contains(addr) {
			return true
		}
	}
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		return g.Allows(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	if !addr.IsValid() || addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() ||
		addr.IsInterfaceLocalMulticast() || addr.IsMulticast() || addr.IsUnspecified() {
		return false
	}
	for _, ranges := range [][]netip.Prefix{alwaysDenied, g.denied} {
		for _, p := range ranges {
			if p.Contains(addr) {
				return false
			}
		}
	}
	return true
}

// control is a net.Dialer Control function: it runs for each address the dialer tries, after
// resolution and before connecting.
func (g *AddressGuard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !g.Allows(ap.Addr()) {
		return ErrAddressNotAllowed // fail closed on anything unparsable
	}
	return nil
}

// transport returns a transport that dials through the guard and uses no proxy: a proxy would
// dial for us, out of the guard's sight.
func (g *AddressGuard) transport() *http.Transport {
	tr := newTransport()
	tr.Proxy = nil
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	tr.DialContext = d.DialContext
	return tr
}

// guardedRoundTripper reports a refusal as ErrAddressNotAllowed alone, dropping the dial
// error around it (which names the address and port).
type guardedRoundTripper struct{ base http.RoundTripper }

func (t guardedRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, ErrAddressNotAllowed):
		return nil, ErrAddressNotAllowed
	case errors.As(err, &dnsErr):
		// A name that does not resolve reads like one that resolves to a refused address, and
		// the resolver's own address is not shown: a tenant learns nothing of internal names.
		return nil, ErrAddressNotAllowed
	}
	return resp, err
}

// ParseCIDRs parses a comma-separated list of CIDRs (flags); "" is an empty, non-nil list.
// A bare address is taken as a single-address prefix.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR: %w", f, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 means 10.0.0.0/8: addresses are judged unmapped.
			if p.Bits() < 96 {
				return nil, fmt.Errorf("%q: an IPv4-mapped prefix must be at least /96", f)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// FormatCIDRs renders prefixes as ParseCIDRs reads them (flag defaults).
func FormatCIDRs(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// HTTPClient is a client that dials only what the guard allows, through no proxy, following
// no redirect (a Shared Signals push stream's endpoint, a URL a tenant chose).
func (g *AddressGuard) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: guardedRoundTripper{base: g.transport()}, CheckRedirect: noRedirects, Timeout: timeout}
}

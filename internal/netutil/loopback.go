// Package netutil holds the one loopback check that the broker's and the
// bridge's configuration and the bridge's local API share.
package netutil

import (
	"net"
	"net/url"
	"strings"
)

// IsLoopbackHost reports whether host, a host name or IP literal (IPv6
// with or without brackets, no port), names the loopback interface:
// "localhost" in any case, or an IP in 127.0.0.0/8 or ::1 (also
// IPv4-mapped). Other names are not resolved: they are not loopback.
func IsLoopbackHost(host string) bool {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsLoopbackOrigin reports whether o (an Origin header or a URL) is an
// http or https URL whose host is loopback (IsLoopbackHost).
func IsLoopbackOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return IsLoopbackHost(u.Hostname())
}

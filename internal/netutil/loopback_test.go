package netutil

import (
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestIsLoopbackHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LocalHost", true},
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"[::1]", true},
		{"::ffff:127.0.0.1", true},
		{"", false},
		{"0.0.0.0", false},
		{"::", false},
		{"10.0.0.1", false},
		{"example.com", false},
		{"localhost.example.com", false},
		{"127.0.0.1.nip.io", false},
		{"[::1", false},
		{"::1]", false},
		{"128.0.0.1", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackHost(tt.host); got != tt.want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestIsLoopbackOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		origin string
		want   bool
	}{
		{"http://localhost:3000", true},
		{"https://127.0.0.1", true},
		{"http://[::1]:8080", true},
		{"http://LOCALHOST", true},
		{"null", false},
		{"file://localhost/etc", false},
		{"ws://localhost", false},
		{"http://evil.example", false},
		{"http://localhost.evil.example", false},
		{"http://127.0.0.1@evil.example", false},
		{"http://evil.example#@127.0.0.1", false},
		{"://localhost", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsLoopbackOrigin(tt.origin); got != tt.want {
			t.Errorf("IsLoopbackOrigin(%q) = %v, want %v", tt.origin, got, tt.want)
		}
	}
}

// FuzzIsLoopbackOrigin: an accepted origin is an http(s) URL whose host is
// localhost or a loopback IP literal.
func FuzzIsLoopbackOrigin(f *testing.F) {
	for _, s := range []string{"http://localhost:3000", "https://[::1]", "http://127.0.0.1@evil", "null", "http://evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, o string) {
		if !IsLoopbackOrigin(o) {
			return
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted %q: scheme %q, err %v", o, u.Scheme, err)
		}
		h := u.Hostname()
		if ip := net.ParseIP(h); !strings.EqualFold(h, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Fatalf("accepted %q with host %q", o, h)
		}
	})
}

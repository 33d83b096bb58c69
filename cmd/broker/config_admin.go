package main

import (
	"path/filepath"
	"strings"
	"time"
)

// Defaults and help texts of the admin settings.
const (
	defaultAdminListen    = "127.0.0.1:8081"
	defaultAgentIdleAfter = "24h"
	adminListenUsage      = "address of the admin listener (API under /admin/api/, page at /admin/): HOST:PORT (keep it on loopback or a private network) or unix:/path/to/socket; empty = off"
	adminTokenUsage       = "bearer token of the admin listener (at least 32 characters; give it with --admin-token-file); required when --admin-listen is TCP"
	agentIdleAfterUsage   = "how long without a pull makes an agent idle in `broker agents list` and the admin page (Go duration or days, e.g. 24h, 7d)"
	// minAdminToken is the shortest admin token accepted.
	minAdminToken = 32
)

// adminConfig is the admin listener's configuration.
type adminConfig struct {
	// Network is "tcp" or "unix"; empty when the listener is off.
	Network, Addr string
	Token         string
	IdleAfter     time.Duration
	// OffReason, when set, says why the default listener stays off
	// (logged at start).
	OffReason string
}

// parseAdminAddr splits an --admin-listen / --admin-url style address:
// "unix:/path" is a unix socket, anything else HOST:PORT.
func parseAdminAddr(s string) (network, addr string) {
	if p, ok := strings.CutPrefix(s, "unix:"); ok {
		return "unix", p
	}
	return "tcp", s
}

// admin resolves --admin-listen, --admin-token and --agent-idle-after.
func (r *resolver) admin(c *config) {
	s := settingByName("admin-listen")
	v := r.get(s)
	if v.text != "" {
		network, addr := parseAdminAddr(v.text)
		switch {
		case network == "unix" && !filepath.IsAbs(addr):
			r.problem("%s is not a unix socket path: use unix:/absolute/path/admin.sock", s.describe(v))
		case network == "unix":
			c.Admin.Network, c.Admin.Addr = network, addr
		default:
			if a := r.addr(s, v, true); a != "" {
				c.Admin.Network, c.Admin.Addr = network, a
				if (a == c.Listen || a == c.MetricsListen) && !strings.HasSuffix(a, ":0") {
					r.problem("%s is also the public or metrics listener's address: give the admin listener its own (e.g. 127.0.0.1:8081)", s.describe(v))
				}
			}
		}
	}
	ts := settingByName("admin-token")
	tv := r.get(ts)
	switch {
	case tv.text != "" && (len(tv.text) < minAdminToken || !tokenPattern.MatchString(tv.text)):
		r.problem("%s is too weak: use at least %d printable characters without spaces, e.g. `openssl rand -hex 32 > admin.token`", ts.describe(tv), minAdminToken)
	case tv.text != "":
		c.Admin.Token = tv.text
	case c.Admin.Network == "tcp" && tv.source != "" && !v.isSet:
		// The default listener needs a token too; without one it stays
		// off rather than stopping a broker that never asked for it.
		c.Admin.Network, c.Admin.Addr = "", ""
		c.Admin.OffReason = "admin listener off: no admin token (" + ts.names() + "); `broker agents` and `broker dlq` need it (or --redis-url)"
	case c.Admin.Network == "tcp" && tv.source != "":
		r.problem("%s is required while the admin listener is on TCP (%s): create one with `openssl rand -hex 32 > admin.token` and pass --admin-token-file admin.token, or set --admin-listen to unix:/path or to empty to turn it off",
			ts.names(), c.Admin.Addr)
	}
	is := settingByName("agent-idle-after")
	iv := r.get(is)
	if d, err := parseDays(iv.text); err != nil || d < time.Minute {
		r.problem("%s is not a duration of at least 1m: use e.g. 24h or 7d", is.describe(iv))
	} else {
		c.Admin.IdleAfter = d
	}
}

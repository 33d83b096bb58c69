package main

import (
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/internal/settings"
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

// checkAdminListen accepts --admin-listen: HOST:PORT, unix:/absolute/path
// or empty (off).
func checkAdminListen(text string) error {
	if text == "" {
		return nil
	}
	if network, addr := parseAdminAddr(text); network == "unix" {
		if !filepath.IsAbs(addr) {
			return errors.New("is not a unix socket path: use unix:/absolute/path/admin.sock")
		}
		return nil
	}
	return settings.ListenAddr(text)
}

// checkAgentIdleAfter accepts --agent-idle-after: at least a minute.
func checkAgentIdleAfter(text string) error {
	if d, err := settings.ParseDays(text); err != nil || d < time.Minute {
		return errors.New("is not a duration of at least 1m: use e.g. 24h or 7d")
	}
	return nil
}

// admin resolves --admin-listen, --admin-token and --agent-idle-after.
func (r *resolver) admin(c *config) {
	s, v := r.Get("admin-listen")
	if v.Text != "" && v.Source != "" {
		network, addr := parseAdminAddr(v.Text)
		c.Admin.Network, c.Admin.Addr = network, addr
		if network == "tcp" && (addr == c.Listen || addr == c.MetricsListen) && !strings.HasSuffix(addr, ":0") {
			r.Problem("%s is also the public or metrics listener's address: give the admin listener its own (e.g. 127.0.0.1:8081)", s.Describe(v))
		}
	}
	ts, tv := r.Get("admin-token")
	switch {
	case tv.Text != "" && (len(tv.Text) < minAdminToken || !tokenPattern.MatchString(tv.Text)):
		r.Problem("%s is too weak: use at least %d printable characters without spaces, e.g. `openssl rand -hex 32 > admin.token`", ts.Names(), minAdminToken)
	case tv.Text != "":
		c.Admin.Token = tv.Text
	case c.Admin.Network == "tcp" && tv.Source != "" && !v.IsSet:
		// The default listener needs a token too; without one it stays
		// off rather than stopping a broker that never asked for it.
		c.Admin.Network, c.Admin.Addr = "", ""
		c.Admin.OffReason = "admin listener off: no admin token (" + ts.Names() + "); `broker agents` and `broker dlq` need it (or --redis-url)"
	case c.Admin.Network == "tcp" && tv.Source != "":
		r.Problem("%s is required while the admin listener is on TCP (%s): create one with `openssl rand -hex 32 > admin.token` and pass --admin-token-file admin.token, or set --admin-listen to unix:/path or to empty to turn it off",
			ts.Names(), c.Admin.Addr)
	}
	c.Admin.IdleAfter, _ = settings.ParseDays(r.Text("agent-idle-after"))
	c.PauseIdleFanout, _ = onOff(r.Text("pause-idle-fanout"))
}

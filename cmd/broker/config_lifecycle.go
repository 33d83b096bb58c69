package main

import "time"

// Defaults of the agent lifecycle settings (broker.DefaultAccessTokenOverlap,
// broker.DefaultRegistrationTokenTTL).
const (
	defaultAccessTokenOverlap   = "10m"
	defaultRegistrationTokenTTL = "1h"
)

// lifecycle resolves --access-token-overlap and --registration-token-ttl
// into c.
func (r *resolver) lifecycle(c *config) {
	s := settingByName("access-token-overlap")
	v := r.get(s)
	if d, err := time.ParseDuration(v.text); err != nil || d < 10*time.Second || d > 24*time.Hour {
		r.problem("%s is not a token overlap: use a duration from 10s to 24h, such as 10m", s.describe(v))
	} else {
		c.AccessTokenOverlap = d
	}
	s = settingByName("registration-token-ttl")
	v = r.get(s)
	if d, err := parseDays(v.text); err != nil || d < time.Minute || d > 30*24*time.Hour {
		r.problem("%s is not a valid lifetime: use a duration from 1m to 30d, such as 1h", s.describe(v))
	} else {
		c.RegistrationTokenTTL = d
	}
	if c.AccessTokenTTL > 0 && c.AccessTokenOverlap >= c.AccessTokenTTL {
		r.problem("--access-token-overlap (%v) must be shorter than --access-token-ttl (%v)", c.AccessTokenOverlap, c.AccessTokenTTL)
	}
}

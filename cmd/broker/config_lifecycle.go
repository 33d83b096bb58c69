package main

import (
	"errors"
	"time"

	"github.com/sealrelay/sealrelay/internal/settings"
)

// Defaults of the agent lifecycle settings (broker.DefaultAccessTokenOverlap,
// broker.DefaultRegistrationTokenTTL).
const (
	defaultAccessTokenOverlap   = "10m"
	defaultRegistrationTokenTTL = "1h"
)

// checkRegistrationTTL accepts --registration-token-ttl: 1m to 30d.
func checkRegistrationTTL(text string) error {
	if d, err := settings.ParseDays(text); err != nil || d < time.Minute || d > 30*24*time.Hour {
		return errors.New("is not a valid lifetime: use a duration from 1m to 30d, such as 1h")
	}
	return nil
}

// lifecycle resolves --access-token-overlap and --registration-token-ttl
// into c.
func (r *resolver) lifecycle(c *config) {
	c.AccessTokenOverlap = r.Duration("access-token-overlap")
	c.RegistrationTokenTTL, _ = settings.ParseDays(r.Text("registration-token-ttl"))
	if c.AccessTokenTTL > 0 && c.AccessTokenOverlap >= c.AccessTokenTTL {
		r.Problem("--access-token-overlap (%v) must be shorter than --access-token-ttl (%v)", c.AccessTokenOverlap, c.AccessTokenTTL)
	}
}

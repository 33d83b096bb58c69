package main

import "time"

// defaultTokenRefreshMargin is broker.DefaultTokenRefreshMargin as a
// setting default.
const defaultTokenRefreshMargin = "2h"

// tokenRefreshMargin resolves --token-refresh-margin: a positive duration
// below the 12 h lifetime of a rotating bot token.
func (r *resolver) tokenRefreshMargin() time.Duration {
	s := settingByName("token-refresh-margin")
	v := r.get(s)
	d, err := time.ParseDuration(v.text)
	if err != nil || d <= 0 || d >= 12*time.Hour {
		r.problem("%s is not a duration between 0 and 12h: use e.g. 2h", s.describe(v))
		return 0
	}
	return d
}

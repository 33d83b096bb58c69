package main

import (
	"time"

	"github.com/sealrelay/sealrelay/broker"
)

// defaultSyncResponseTimeout is the default of --sync-response-timeout
// (broker.DefaultSyncResponseTimeout).
const defaultSyncResponseTimeout = "2.5s"

// respond resolves --sync-response-timeout into c.
func (r *resolver) respond(c *config) {
	s := settingByName("sync-response-timeout")
	v := r.get(s)
	d, err := time.ParseDuration(v.text)
	if err != nil || d < 100*time.Millisecond || d > broker.MaxSyncResponseTimeout {
		r.problem("%s is not a hold deadline: use a duration from 100ms to %v, such as 2.5s (Slack gives up after 3s)",
			s.describe(v), broker.MaxSyncResponseTimeout)
		return
	}
	c.SyncResponseTimeout = d
}

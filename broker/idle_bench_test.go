package broker

import (
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// BenchmarkPausedFanout10 is the webhook path with ten agents on the org,
// registered two hours ago, five of which pulled since (the others are
// idle), with --pause-idle-fanout off and on: "on" stores five copies and
// records five agent_idle drops per event, reading last pulls from its
// cache (at most one store read per IdleRefreshInterval).
//
//	go test -run XXX -bench BenchmarkPausedFanout10 -benchtime 3000x ./broker
func BenchmarkPausedFanout10(b *testing.B) {
	for _, tc := range []struct {
		name  string
		team  string
		pause bool
	}{{"off", "T0BPAUSE0", false}, {"on", "T0BPAUSE1", true}} {
		b.Run(tc.name, func(b *testing.B) {
			h := benchHarness(b, withConfig(func(c *Config) { c.PauseIdleFanout, c.AgentIdleAfter = tc.pause, time.Hour }))
			org, tok := h.install(slackfake.Install{TeamID: tc.team})
			agents := []*agentClient{h.register(org, tok)}
			for range 9 {
				agents = append(agents, h.register(org, h.extraRegToken(org)))
			}
			h.clock.Advance(2 * time.Hour)
			for _, a := range agents[:5] {
				a.pull(1, 0)
			}
			postEventsParallel(b, h, org)
		})
	}
}

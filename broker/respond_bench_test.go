package broker

import (
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// BenchmarkRespondRoundTrip measures Slack request → held on the broker →
// pulled by the agent → inbox.respond → Slack's response, at a steady 50
// Slack requests per second (one every 20 ms, each on its own connection),
// against the real Redis. "across_replicas" holds Slack's request on one
// replica while the agent pulls and responds through another. Reports the
// p50 and p99 of the round trip as Slack sees it. Run with e.g.
//
//	go test -run '^$' -bench BenchmarkRespondRoundTrip -benchtime 500x ./broker/
func BenchmarkRespondRoundTrip(b *testing.B) {
	for _, across := range []bool{false, true} {
		name := "same_replica"
		if across {
			name = "across_replicas"
		}
		b.Run(name, func(b *testing.B) {
			h := benchHarness(b, withConfig(func(c *Config) { c.SyncResponseTimeout = MaxSyncResponseTimeout }))
			agentURL := h.url
			if across {
				_, _, _, _, agentURL = h.newReplica()
			}
			team := "T0BRSP01"
			if across {
				team = "T0BRSP02"
			}
			org, tok := h.install(slackfake.Install{TeamID: team})
			a := h.registerCapable(agentURL, org, tok)
			answer := []byte(`{"response_type":"ephemeral","text":"benchmark answer"}`)

			var stop atomic.Bool
			var agentWG sync.WaitGroup
			agentWG.Add(1)
			go func() {
				defer agentWG.Done()
				var wg sync.WaitGroup
				for !stop.Load() {
					for _, m := range a.pullWithMeta(10, 1, capableMeta) {
						wg.Add(1)
						go func() {
							defer wg.Done()
							a.respond(m.ID, answer)
						}()
						go a.ack(m.ID)
					}
				}
				wg.Wait()
			}()

			lat := make([]time.Duration, b.N)
			var failed atomic.Int64
			var wg sync.WaitGroup
			tick := time.NewTicker(20 * time.Millisecond)
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := <-slackAsync(h.url, "/slack/commands", commandForm(org, "bench"))
					if r.err != nil || r.status != 200 || string(r.body) != string(answer) {
						failed.Add(1)
					}
					lat[i] = r.took
				}()
			}
			wg.Wait()
			b.StopTimer()
			tick.Stop()
			stop.Store(true)
			agentWG.Wait()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d Slack requests did not get the agent's answer", n, b.N)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

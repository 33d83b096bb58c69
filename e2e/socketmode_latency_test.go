package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The measurement mode of TestSyncAnswerLatency and
// TestSocketModeDeliveryLatency: how many requests, at what rate. The
// defaults keep CI short; the figures in docs/clients.md come from
//
//	go test ./e2e -run 'TestSyncAnswerLatency|TestSocketModeDeliveryLatency' -v -count=1 -sm.requests 1000
var (
	smRequests = flag.Int("sm.requests", 0, "requests TestSyncAnswerLatency and TestSocketModeDeliveryLatency send per phase (0 = 100, 25 with -race)")
	smRate     = flag.Float64("sm.rate", 50, "requests per second TestSyncAnswerLatency and TestSocketModeDeliveryLatency send (open loop)")
)

func smCount() int {
	if *smRequests > 0 {
		return *smRequests
	}
	if raceEnabled {
		return 25
	}
	return 100
}

// openLoop calls f(i) for i in [0, n) at rate per second, each in its own
// goroutine (a slow answer does not delay the next request, as with Slack),
// and waits for all of them.
func openLoop(n int, rate float64, f func(i int)) {
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			<-tick.C
		}
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// latencies formats p50/p90/p99/max of d (sorted in place).
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	r := func(x time.Duration) time.Duration { return x.Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)", r(percentile(d, 50)), r(percentile(d, 90)),
		r(percentile(d, 99)), r(d[len(d)-1]), len(d))
}

// TestSocketModeDeliveryLatency measures event delivery, Slack's POST to
// the broker → the app has the event, for the three sinks side by side: one
// org with three agents, whose bridges deliver to a slack-go Socket Mode
// app, forward to an HTTP receiver, and stream over SSE. Each event is
// fanned out to all three. It prints the figures (run with -v) and
// asserts only that every sink received every event.
func TestSocketModeDeliveryLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.startReplica("A")
	sm := e.agent
	org, token := e.install(r)
	sm.register(r.url, org, token)
	fwd := e.newAgent("forward")
	_, token = e.install(r)
	fwd.register(r.url, org, token)
	sse := e.newAgent("sse")
	_, token = e.install(r)
	sse.register(r.url, org, token)

	sm.startSocketBridge()
	app := startSMGoApp(t, sm.apiURL())

	var mu sync.Mutex
	posted := map[string]time.Time{}
	arrived := map[string]map[string]time.Time{"socket mode": {}, "forward": {}, "sse": {}}
	arrive := func(sink, id string, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := arrived[sink][id]; !ok {
			arrived[sink][id] = at
		}
	}
	fwd.recv.setHold(func(id string) bool { arrive("forward", id, time.Now()); return true })
	fwd.startForwardBridge(fwd.recv.srv.URL + "/slack/events")
	sse.startBridgeWith()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sseDone := make(chan error, 1)
	connected := make(chan struct{})
	go func() {
		sseDone <- readSSETimes(ctx, sse.bridgeAPI, connected, func(id string, at time.Time) { arrive("sse", id, at) })
	}()
	<-connected

	n := smCount()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0LAT%05d", i)
	}
	openLoop(n, *smRate, func(i int) {
		mu.Lock()
		posted[ids[i]] = time.Now()
		mu.Unlock()
		if err := e.postEvent(r, ids[i], i); err != nil {
			t.Errorf("post %s: %v", ids[i], err)
		}
	})
	waitFor(t, "every event at every sink", 60*time.Second, func() bool {
		for _, rc := range app.snapshot() {
			arrive("socket mode", rc.id, rc.at)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, got := range arrived {
			for _, id := range ids {
				if _, ok := got[id]; !ok {
					return false
				}
			}
		}
		return true
	})
	cancel()
	if err := <-sseDone; err != nil && ctx.Err() == nil {
		t.Errorf("SSE: %v", err)
	}
	mu.Lock()
	for _, sink := range []string{"socket mode", "forward", "sse"} {
		d := make([]time.Duration, 0, n)
		for _, id := range ids {
			d = append(d, arrived[sink][id].Sub(posted[id]))
		}
		t.Logf("event delivery to %s (Slack POST → broker → bridge → app), 3 agents, %.0f events/s, race=%v: %s", sink, *smRate, raceEnabled, latencies(d))
	}
	mu.Unlock()
	retried := 0
	for _, rc := range app.snapshot() {
		if rc.retry > 0 {
			retried++
		}
	}
	t.Logf("socket mode: %d envelopes were redelivered (retry_attempt > 0)", retried)
	checkRun(t, e, r, r)
}

// readSSETimes reads the bridge's GET /events and calls got with each
// Slack event id and the time its data line arrived, until ctx ends. It
// closes connected once the stream is open.
func readSSETimes(ctx context.Context, api string, connected chan<- struct{}, got func(id string, at time.Time)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/events", nil)
	if err != nil {
		close(connected)
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	close(connected)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /events: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		at := time.Now()
		var ev struct {
			Payload struct {
				EventID string `json:"event_id"`
			} `json:"payload"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Payload.EventID != "" {
			got(ev.Payload.EventID, at)
		}
	}
	return sc.Err()
}

// TestSyncAnswerLatency measures Slack request → agent answer → Slack
// response through the real binaries: slash commands posted to the broker
// at -sm.rate per second (open loop), each held until the slack-go Socket
// Mode app's ack payload comes back through the bridge (POST
// /api/inbox/respond). Phase "same replica" posts to the replica the
// bridge polls; phase "cross replica" to the other one (the respond
// reaches the held request over Redis). It prints the figures (run with
// -v) and asserts only that every answer that came is the app's; how many
// missed the broker's deadline (an empty 200) is reported, not asserted.
func TestSyncAnswerLatency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.startReplica("A")
	b := e.startReplica("B")
	org, token := e.install(a)
	e.register(b.url, org, token)
	e.startSocketBridge()
	app := startSMGoApp(t, e.apiURL())
	app.prime(t, e, a)
	// Warm up: connections, caches, the app's first envelope.
	for i, r := range []*replica{a, b, a, b} {
		text := fmt.Sprintf("warm-up %d", i)
		ans, err := e.syncCommand(r, text, "trig-warm")
		if err != nil {
			t.Fatal(err)
		}
		checkText(t, ans, "warm-up command", "slack-go: ack for "+text)
	}

	n := smCount()
	for _, phase := range []struct {
		name string
		post *replica
	}{{"same replica", b}, {"cross replica", a}} {
		d := make([]time.Duration, 0, n)
		var mu sync.Mutex
		missed := 0
		openLoop(n, *smRate, func(i int) {
			text := fmt.Sprintf("%s %d", phase.name, i)
			ans, err := e.syncCommand(phase.post, text, "trig-lat")
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(ans.body) == 0 {
				missed++
				return
			}
			if got := ans.json(t)["text"]; got != "slack-go: ack for "+text {
				t.Errorf("request %d: Slack got %q, want the app's answer to it", i, ans.body)
			}
			d = append(d, ans.took)
		})
		t.Logf("sync answer (Slack → broker %s → bridge polling %s → slack-go Socket Mode ack → respond → Slack), %s, %.0f requests/s, race=%v: %s; %d of %d missed the deadline",
			phase.post.name, b.name, phase.name, *smRate, raceEnabled, latencies(d), missed, n)
	}
	// Every command reached the app (answered or not).
	app.wait(t, "every command at the app", 30*time.Second, func() bool {
		seen := map[string]bool{}
		for _, r := range app.received {
			if r.kind == "slash_command" {
				seen[r.id] = true
			}
		}
		return len(seen) == 4+2*n
	})
	checkRun(t, e, a, b)
}

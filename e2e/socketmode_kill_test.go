package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// TestSocketModeBridgeKill9 runs the real bridge binary with Socket Mode as
// its only sink and a real slack-go Socket Mode app. The app acks the
// first 10 of 20 events and holds the 11th unacked; the bridge is killed
// with SIGKILL while the app holds it, and restarted on the same state
// directory. The app reconnects by itself (apps.connections.open through
// the bridge's Web API) and then acks everything: every event is acked by
// the app exactly once — none lost, and none the app had acked comes again.
func TestSocketModeBridgeKill9(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.startReplica("A")
	org, token := e.install(a)
	e.register(a.url, org, token)
	e.startSocketModeBridge()

	app := newSMApp(t, e.bridgeAPI)
	const n, holdAt = 20, 10
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0SMKILL%04d", i)
	}
	app.setPolicy(func(id string) bool { return id < ids[holdAt] })
	for i, id := range ids {
		postOne(t, e, a, id, i)
	}
	waitFor(t, "the app holding "+ids[holdAt], 60*time.Second, func() bool { return app.receivedCount(ids[holdAt]) > 0 })
	e.bridge.kill9(t)

	app.setPolicy(func(string) bool { return true })
	e.startSocketModeBridge()
	// The broker gives the killed bridge's leased messages out again after
	// their lease (30 s). Then a sentinel: delivery is in order per
	// channel, so any late duplicate would come before it.
	waitFor(t, "all events acked by the app", 90*time.Second, func() bool {
		for _, id := range ids {
			if app.ackedCount(id) == 0 {
				return false
			}
		}
		return true
	})
	postOne(t, e, a, "Ev0SMKILLSENTINEL", 999)
	waitFor(t, "the sentinel acked by the app", 90*time.Second, func() bool { return app.ackedCount("Ev0SMKILLSENTINEL") == 1 })

	for _, id := range ids {
		if c := app.ackedCount(id); c != 1 {
			t.Errorf("%s acked by the app %d times, want exactly 1", id, c)
		}
	}
	if dup := app.afterAck(); len(dup) > 0 {
		t.Errorf("delivered again after the app acked them: %v", dup)
	}
	if strings.Contains(e.bridge.log(), "WARNING: DATA RACE") {
		t.Errorf("the bridge reported a data race:\n%s", e.bridge.tail(80))
	}
}

// startSocketModeBridge runs `bridge run --socket-mode` with no other sink,
// with the same state directory and port on every (re)start.
func (ag *agent) startSocketModeBridge() {
	e := ag.e
	t := e.t
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		if ag.bridgePort == 0 {
			ag.bridgePort = freePort(t)
		}
		ag.bridgeRuns++
		listen := fmt.Sprintf("127.0.0.1:%d", ag.bridgePort)
		p := startProc(t, fmt.Sprintf("bridge %s run #%d", ag.name, ag.bridgeRuns), filepath.Join(e.dir, "bridge-"+ag.name+".log"), minimalEnv(e.dir), bridgeBin, "run",
			"--config", ag.bridgeCfg,
			"--state-dir", filepath.Join(ag.bridgeDir, "state"),
			"--listen", listen,
			"--socket-mode", "--stream=false",
			"--log-format", "json",
			"--log-level", "debug",
		)
		if waitHTTP("http://"+listen+"/health", p, 15*time.Second) {
			ag.bridge = p
			ag.bridgeAPI = "http://" + listen
			return
		}
		p.stop(t)
		if !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("bridge did not become ready:\n%s", p.tail(40))
		}
		ag.bridgePort = 0
	}
	t.Fatal("bridge: no free port after 3 attempts")
}

// smApp is a slack-go Socket Mode app that records what it received and
// acked, by Slack event id.
type smApp struct {
	client *socketmode.Client

	mu       sync.Mutex
	policy   func(eventID string) bool // ack it?
	received map[string]int
	acked    map[string]int
	again    []string // received after the app had acked it
}

func newSMApp(t *testing.T, bridgeAPI string) *smApp {
	api := slack.New("xoxb-unused", slack.OptionAppLevelToken("xapp-e2e"), slack.OptionAPIURL(bridgeAPI+"/api/"))
	a := &smApp{client: socketmode.New(api), received: map[string]int{}, acked: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.client.RunContext(ctx) }()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-a.client.Events:
				if ev.Type == socketmode.EventTypeEventsAPI && ev.Request != nil {
					a.handle(ev)
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func (a *smApp) handle(ev socketmode.Event) {
	var p struct {
		EventID string `json:"event_id"`
	}
	_ = json.Unmarshal(ev.Request.Payload, &p)
	a.mu.Lock()
	a.received[p.EventID]++
	if a.acked[p.EventID] > 0 {
		a.again = append(a.again, p.EventID)
	}
	ack := a.policy == nil || a.policy(p.EventID)
	a.mu.Unlock()
	if !ack {
		return
	}
	if err := a.client.Ack(*ev.Request); err != nil {
		return // not acked: the bridge redelivers
	}
	a.mu.Lock()
	a.acked[p.EventID]++
	a.mu.Unlock()
}

func (a *smApp) setPolicy(f func(string) bool) {
	a.mu.Lock()
	a.policy = f
	a.mu.Unlock()
}

func (a *smApp) receivedCount(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.received[id]
}

func (a *smApp) ackedCount(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.acked[id]
}

func (a *smApp) afterAck() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.again...)
}

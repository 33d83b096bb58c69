package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSSEBridgeRestartLosesNothing runs a bridge whose only sink is the SSE
// stream, with no consumer connected: 200 events are acked at the broker,
// the bridge is killed with SIGKILL and restarted, and a consumer that
// connects then gets every event exactly once. Then 100 more arrive while
// the consumer is away, the bridge is stopped with SIGTERM and restarted,
// and the consumer resuming with its Last-Event-ID gets exactly those 100,
// with ids above the ones it had.
func TestSSEBridgeRestartLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.startReplica("A")
	org, token := e.install(a)
	e.register(a.url, org, token)
	e.startSSEBridge()

	// --- kill -9 with 200 acked, unread events.
	postMany(t, e, a, "Ev0KILL", 200)
	waitFor(t, "200 acks at the broker", 60*time.Second, func() bool { return e.ackedTotal(t) == 200 })
	e.bridge.kill9(t)
	e.startSSEBridge()
	evs := e.readUntil(t, "", "Ev0KILLSENTINEL", func() { postOne(t, e, a, "Ev0KILLSENTINEL", 999) })
	checkExactlyOnce(t, evs, "Ev0KILL", 200, "")

	// --- SIGTERM with 100 acked, unread events; resume with Last-Event-ID.
	lastID := evs[len(evs)-1].id
	postMany(t, e, a, "Ev0TERM", 100)
	waitFor(t, "300 acks at the broker", 60*time.Second, func() bool { return e.ackedTotal(t) == 301 })
	e.bridge.stop(t)
	e.startSSEBridge()
	evs = e.readUntil(t, lastID, "Ev0TERMSENTINEL", func() { postOne(t, e, a, "Ev0TERMSENTINEL", 998) })
	checkExactlyOnce(t, evs, "Ev0TERM", 100, lastID)
	if h := e.health(); h["stream_dropped"] != float64(0) {
		t.Errorf("stream_dropped %v after a complete read, want 0", h["stream_dropped"])
	}
	if strings.Contains(e.bridge.log(), "WARNING: DATA RACE") {
		t.Errorf("the bridge reported a data race:\n%s", e.bridge.tail(80))
	}
}

// startSSEBridge runs `bridge run` with the SSE stream as its only sink
// (no --forward-url), at debug level so that the test can count acks, with
// the same state directory and port on every (re)start.
func (ag *agent) startSSEBridge() {
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
			"--stream",
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

// ackedTotal sums the counts of the "acked" debug lines of every run of
// the agent's bridge (its log file is shared by the runs).
func (ag *agent) ackedTotal(t testing.TB) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ag.e.dir, "bridge-"+ag.name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `"msg":"acked"`) {
			continue
		}
		var l struct {
			Count int `json:"count"`
		}
		if json.Unmarshal([]byte(line), &l) == nil {
			total += l.Count
		}
	}
	return total
}

func postOne(t *testing.T, e *env, r *replica, id string, n int) {
	t.Helper()
	if err := e.postEvent(r, id, n); err != nil {
		t.Fatalf("post %s: %v", id, err)
	}
}

func postMany(t *testing.T, e *env, r *replica, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		postOne(t, e, r, fmt.Sprintf("%s%04d", prefix, i), i)
	}
}

// readUntil connects to GET /events (resuming after lastID when set), calls
// then() once connected, and returns every event up to and including the
// one with Slack event id stop. Delivery is in order, so a duplicate of an
// earlier event would arrive before stop.
func (ag *agent) readUntil(t *testing.T, lastID, stop string, then func()) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ag.bridgeAPI+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	then()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	var out []sseEvent
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			t.Fatalf("unexpected SSE notice %q", line)
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			var ev struct {
				MessageID string          `json:"message_id"`
				Payload   json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal([]byte(line[6:]), &ev); err != nil {
				t.Fatalf("SSE data is not an event: %v: %s", err, line)
			}
			var p struct {
				EventID string `json:"event_id"`
			}
			_ = json.Unmarshal(ev.Payload, &p)
			cur.messageID, cur.eventID, cur.payload = ev.MessageID, p.EventID, ev.Payload
		case line == "":
			if cur.id != "" {
				out = append(out, cur)
				if cur.eventID == stop {
					return out
				}
			}
			cur = sseEvent{}
		}
	}
	t.Fatalf("GET /events ended after %d events without %s: %v", len(out), stop, sc.Err())
	return nil
}

// checkExactlyOnce checks that evs holds prefix0000 … prefix<n-1> once
// each, in order, followed by the sentinel, with increasing ids above
// after.
func checkExactlyOnce(t *testing.T, evs []sseEvent, prefix string, n int, after string) {
	t.Helper()
	if len(evs) != n+1 {
		t.Fatalf("got %d events, want %d and the sentinel", len(evs), n)
	}
	last, _ := strconv.ParseUint(after, 10, 64)
	for i, ev := range evs {
		if i < n {
			if want := fmt.Sprintf("%s%04d", prefix, i); ev.eventID != want {
				t.Fatalf("event %d is %q, want %s", i, ev.eventID, want)
			}
		}
		id, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil || id <= last {
			t.Fatalf("event %d has id %q, not above %d", i, ev.id, last)
		}
		last = id
	}
}

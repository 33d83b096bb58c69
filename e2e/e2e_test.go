package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// TestEndToEnd drives one deployment through install and register, events
// in both directions across two replicas, and a broker replica killed with
// SIGKILL under the bridge.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e, a, b := deploy(t)

	stepEventsAcrossReplicas(t, e, a, b)
	stepSlackRetries(t, e, a, b)
	stepStream(t, e)
	stepInteractivityAndCommands(t, e, a)
	stepReplies(t, e)
	stepSecondAgent(t, e, a, b)
	stepKillReplica(t, e, a, b)
	checkRun(t, e, a, b)
	t.Logf("end-to-end run took %s", time.Since(start).Round(time.Millisecond))
}

// TestBridgeKill9MidStream kills the bridge with SIGKILL in the middle of a
// stream of 1,000 events and restarts it.
func TestBridgeKill9MidStream(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e, a, b := deploy(t)

	stepKillBridge(t, e, a)
	checkRun(t, e, a, b)
	t.Logf("kill -9 run took %s", time.Since(start).Round(time.Millisecond))
}

// deploy starts Redis, the fake Slack, replicas A and B, installs the app
// through A, registers a bridge that lists B first (so it polls B) with
// `bridge register`, and starts `bridge run`.
func deploy(t *testing.T) (*env, *replica, *replica) {
	start := time.Now()
	e := newEnv(t)
	a := e.startReplica("A")
	b := e.startReplica("B")
	t.Logf("redis %s, replica A %s, replica B %s, fake Slack %s (setup %s)", e.redis.url, a.url, b.url, e.slack.URL, time.Since(start).Round(time.Millisecond))

	// --- Install through the fake OAuth consent, register with the token
	// scraped from the callback page. The bridge lists B first, so it polls B.
	org, token := e.install(a)
	if org != teamID {
		t.Fatalf("install page org id %q, want %q", org, teamID)
	}
	out := e.register(b.url+","+a.url, org, token)
	if !strings.Contains(out, "Registered with "+b.url+", "+a.url+" for org "+teamID) {
		t.Fatalf("bridge register output:\n%s", out)
	}
	// The token is single use: a second register is refused with advice.
	cmd := execBridge(e, "register", "--broker-url", a.url, "--org-id", org, "--registration-token", token,
		"--config", e.bridgeCfg+".second")
	if o, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(o), "already used") {
		t.Fatalf("second register with the same token: err=%v\n%s", err, o)
	}
	e.startBridge()
	return e, a, b
}

// checkRun checks the whole run: every event exactly once, every forward
// signed, no data race reported by a process.
func checkRun(t *testing.T, e *env, a, b *replica) {
	procs := []*proc{a.proc, b.proc}
	for _, ag := range e.agents {
		_, count, badSig, other := ag.recv.snapshot()
		for id, n := range count {
			if n != 1 {
				t.Errorf("bridge %s: event %s delivered %d times", ag.name, id, n)
			}
		}
		if badSig != 0 {
			t.Errorf("bridge %s: %d forwarded requests failed slack-go signature verification", ag.name, badSig)
		}
		if len(other) != 0 {
			t.Errorf("bridge %s: unexpected forwarded requests: %q", ag.name, other)
		}
		if ag.bridge != nil {
			procs = append(procs, ag.bridge)
		}
	}
	for _, p := range procs {
		if strings.Contains(p.log(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", p.name, p.tail(80))
		}
	}
}

// stepEventsAcrossReplicas posts signed events to replica A while the bridge
// long-polls replica B, and checks that each arrives once, in order,
// decrypted to the exact bytes Slack sent, with a valid forward signature.
func stepEventsAcrossReplicas(t *testing.T, e *env, a, b *replica) {
	const n = 25
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0FLOW%04d", i)
		if err := e.postEvent(a, ids[i], i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "25 events at the forward receiver", 30*time.Second, func() bool { return e.recv.received(ids) == n })
	order, count, _, _ := e.recv.snapshot()
	if got := strings.Join(order[:n], ","); got != strings.Join(ids, ",") {
		t.Fatalf("delivery order\n got %s\nwant %s", got, strings.Join(ids, ","))
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("%s delivered %d times", id, count[id])
		}
		if got, want := e.recv.body(id), e.postedBody(id); !bytes.Equal(got, want) {
			t.Errorf("%s forwarded body differs from what Slack sent:\n got %s\nwant %s", id, got, want)
		}
	}
	if h := e.health(); h["broker_url"] != b.url {
		t.Errorf("bridge polls %v, want replica B %s", h["broker_url"], b.url)
	}
	// Replica A took the webhooks and no pulls; B served the pulls and acks.
	// (Access log lines are written just after each response.)
	waitFor(t, "replica A's access log to show the events", 10*time.Second, func() bool {
		return countLines(a.proc, `"route":"slack_events"`, `"status":200`) >= len(ids)
	})
	waitFor(t, "replica B's access log to show pulls and acks", 10*time.Second, func() bool {
		return countLines(b.proc, `"route":"pull"`, `"status":200`) > 0 && countLines(b.proc, `"route":"ack"`, `"status":200`) > 0
	})
	if n := countLines(a.proc, `"route":"pull"`); n != 0 {
		t.Errorf("replica A served %d pulls, want 0", n)
	}
	if n := countLines(b.proc, `"route":"slack_events"`); n != 0 {
		t.Errorf("replica B received %d events, want 0", n)
	}
}

// stepReplies sends replies through the bridge's local API and checks that
// the fake Slack received exactly those calls, with the installation's bot
// token, and that a Slack error comes back to the agent.
func stepReplies(t *testing.T, e *env) {
	before := len(e.fake.Calls())

	code, res := e.localPost("/send", `{"channel":"C0E2E","text":"reply one"}`)
	if code != http.StatusOK || res["ok"] != true {
		t.Fatalf("/send: %d %v", code, res)
	}
	ts, _ := res["ts"].(string)
	if ts == "" {
		t.Fatalf("/send returned no ts: %v", res)
	}
	if code, res = e.localPost("/reply", `{"thread_id":"C0E2E:1700000000.000003","text":"in the thread"}`); code != http.StatusOK {
		t.Fatalf("/reply: %d %v", code, res)
	}
	if code, res = e.localPost("/react", `{"channel":"C0E2E","timestamp":"`+ts+`","emoji":"white_check_mark"}`); code != http.StatusOK {
		t.Fatalf("/react: %d %v", code, res)
	}
	if code, res = e.localPost("/update", `{"channel":"C0E2E","timestamp":"`+ts+`","text":"reply one (edited)"}`); code != http.StatusOK {
		t.Fatalf("/update: %d %v", code, res)
	}
	// Invalid input stops at the bridge.
	if code, res = e.localPost("/send", `{"channel":"not-a-channel","text":"x"}`); code != http.StatusBadRequest {
		t.Fatalf("/send with a bad channel: %d %v, want 400", code, res)
	}
	// A Slack error is passed back with its code.
	e.fake.Script("chat.postMessage", slackfake.Reply{Error: "channel_not_found"})
	if code, res = e.localPost("/send", `{"channel":"C0GONE","text":"into the void"}`); code != http.StatusBadGateway || res["error"] != "channel_not_found" {
		t.Fatalf("/send to a missing channel: %d %v, want 502 channel_not_found", code, res)
	}

	// The fake Slack saw exactly these calls, in this order.
	botToken := ""
	for _, c := range e.fake.Calls()[:before] {
		if c.Method == "auth.test" {
			botToken = c.Token // the broker checks the new bot token at install
		}
	}
	type want struct {
		method string
		params map[string]string
		err    string
	}
	wants := []want{
		{"chat.postMessage", map[string]string{"channel": "C0E2E", "text": "reply one", "thread_ts": ""}, ""},
		{"chat.postMessage", map[string]string{"channel": "C0E2E", "text": "in the thread", "thread_ts": "1700000000.000003"}, ""},
		{"reactions.add", map[string]string{"channel": "C0E2E", "timestamp": ts, "name": "white_check_mark"}, ""},
		{"chat.update", map[string]string{"channel": "C0E2E", "ts": ts, "text": "reply one (edited)"}, ""},
		{"chat.postMessage", map[string]string{"channel": "C0GONE", "text": "into the void"}, "channel_not_found"},
	}
	calls := e.fake.Calls()[before:]
	if len(calls) != len(wants) {
		t.Fatalf("fake Slack got %d calls, want %d: %+v", len(calls), len(wants), calls)
	}
	for i, w := range wants {
		c := calls[i]
		if c.Method != w.method || c.Error != w.err {
			t.Errorf("call %d: %s (error %q), want %s (error %q)", i, c.Method, c.Error, w.method, w.err)
		}
		for k, v := range w.params {
			if got := c.Params.Get(k); got != v {
				t.Errorf("call %d %s: %s = %q, want %q", i, c.Method, k, got, v)
			}
		}
		if botToken == "" || c.Token != botToken {
			t.Errorf("call %d %s was not made with the installation's bot token", i, c.Method)
		}
	}
	if msgs := e.fake.Messages(); len(msgs) < 2 || msgs[0].Text != "reply one (edited)" || len(msgs[0].Reactions) != 1 {
		t.Errorf("fake Slack messages after the replies: %+v", msgs)
	}
}

// stepKillBridge streams 1,000 events into replica A and kills the bridge
// with SIGKILL in the middle, at a moment when one message of the current
// batch was delivered to the app but not yet acked (the worst case), then
// restarts it: no event is lost and none is delivered twice.
func stepKillBridge(t *testing.T, e *env, a *replica) {
	const n, holdAt = 1000, 300
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0KILL%04d", i)
	}
	var posted atomic.Int64
	postDone := make(chan error, 1)

	// The receiver picks the moment: it holds event holdAt until a backlog
	// has built up (so that pulls return full batches), then, at the first
	// event that shares its pull with the previous one (same last_poll_at),
	// it signals the kill and never answers that event.
	victim := make(chan string, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	phase, prevPoll := 0, ""
	lastPoll := func() string {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(e.bridgeAPI + "/health")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var h struct {
			LastPollAt string `json:"last_poll_at"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&h)
		return h.LastPollAt
	}
	e.recv.setHold(func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case phase == 0 && id == ids[holdAt]:
			// Stay well inside the bridge's 10 s forward timeout.
			deadline := time.Now().Add(5 * time.Second)
			for posted.Load() < holdAt+60 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			prevPoll, phase = lastPoll(), 1
		case phase == 1:
			p := lastPoll()
			if p == "" || p != prevPoll {
				prevPoll = p
				return true
			}
			phase = 2
			victim <- id
			<-release
			return false
		}
		return true
	})
	go func() {
		for i, id := range ids {
			if err := e.postEvent(a, id, 10000+i); err != nil {
				postDone <- err
				return
			}
			posted.Add(1)
		}
		postDone <- nil
	}()

	var v string
	postErr, postFinished := error(nil), false
	select {
	case v = <-victim:
	case postErr = <-postDone:
		postFinished = true
		if postErr != nil {
			t.Fatal(postErr)
		}
		select {
		case v = <-victim:
		case <-time.After(60 * time.Second):
			t.Fatal("the bridge never reached the kill point")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the bridge never reached the kill point")
	}
	delivered := e.recv.received(ids)
	e.bridge.kill9(t)
	close(release)
	t.Logf("killed the bridge with SIGKILL while the app held %s: %d of %d events delivered, %d posted", v, delivered, n, posted.Load())
	killedAt := time.Now()
	e.startBridge()

	// The message that was delivered but not acked comes back after its
	// 30-second lease; the dedup store must suppress it.
	waitFor(t, "all 1,000 events after the restart", 75*time.Second, func() bool { return e.recv.received(ids) == n })
	if !postFinished {
		postErr = <-postDone
	}
	if postErr != nil {
		t.Fatal(postErr)
	}
	waitFor(t, "the restarted bridge to suppress the redelivered message", 15*time.Second, func() bool {
		d, _ := e.health()["duplicates"].(float64)
		return d >= 1
	})
	_, count, _, _ := e.recv.snapshot()
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("%s delivered %d times", id, count[id])
		}
	}
	t.Logf("all %d events delivered once; %s after the kill, duplicates suppressed: %v", n,
		time.Since(killedAt).Round(time.Millisecond), e.health()["duplicates"])
}

// stepKillReplica kills the replica the bridge polls (B) with SIGKILL; the
// bridge carries on through A, both for events and for replies.
func stepKillReplica(t *testing.T, e *env, a, b *replica) {
	if h := e.health(); h["broker_url"] != b.url {
		t.Fatalf("before the kill the bridge polls %v, want B %s", h["broker_url"], b.url)
	}
	b.proc.kill9(t)
	const n = 50
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0FAIL%04d", i)
		if err := e.postEvent(a, ids[i], 20000+i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "50 events through replica A after B died", 30*time.Second, func() bool { return e.recv.received(ids) == n })
	order, count, _, _ := e.recv.snapshot()
	var got []string
	for _, id := range order {
		if strings.HasPrefix(id, "Ev0FAIL") {
			got = append(got, id)
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("order after failover\n got %s\nwant %s", strings.Join(got, ","), strings.Join(ids, ","))
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("%s delivered %d times", id, count[id])
		}
	}
	if h := e.health(); h["broker_url"] != a.url {
		t.Errorf("after the kill the bridge polls %v, want A %s", h["broker_url"], a.url)
	}
	before := len(e.fake.CallsTo("chat.postMessage"))
	if code, res := e.localPost("/send", `{"channel":"C0E2E","text":"still here"}`); code != http.StatusOK {
		t.Fatalf("/send after B died: %d %v", code, res)
	}
	if calls := e.fake.CallsTo("chat.postMessage"); len(calls) != before+1 || calls[len(calls)-1].Params.Get("text") != "still here" {
		t.Errorf("fake Slack did not get the send after failover: %+v", calls[before:])
	}
	if e.bridge.exited() {
		t.Errorf("the bridge exited when replica B died:\n%s", e.bridge.tail(30))
	}
}

// sseEvent is one event read from the bridge's GET /events.
type sseEvent struct {
	id        string
	messageID string
	eventID   string
	payload   json.RawMessage
}

// readSSE reads events from GET /events (resuming after lastID when set)
// until want events with the given event id prefix arrived.
func readSSE(t *testing.T, e *env, lastID, prefix string, want int) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.bridgeAPI+"/events", nil)
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
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	var out []sseEvent
	var cur sseEvent
	for len(out) < want && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			var ev struct {
				MessageID string          `json:"message_id"`
				Source    string          `json:"source"`
				Type      string          `json:"type"`
				Payload   json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal([]byte(line[6:]), &ev); err != nil {
				t.Fatalf("SSE data is not an event: %v: %s", err, line)
			}
			var p struct {
				EventID string `json:"event_id"`
			}
			_ = json.Unmarshal(ev.Payload, &p)
			if ev.Source != "slack" || ev.Type != "event_callback" {
				t.Fatalf("SSE event source/type %s/%s", ev.Source, ev.Type)
			}
			cur.messageID, cur.eventID, cur.payload = ev.MessageID, p.EventID, ev.Payload
		case line == "":
			if cur.eventID != "" && strings.HasPrefix(cur.eventID, prefix) {
				out = append(out, cur)
			}
			cur = sseEvent{}
		}
	}
	if len(out) < want {
		t.Fatalf("GET /events ended after %d of %d events: %v", len(out), want, sc.Err())
	}
	return out
}

// stepStream reads the same events from the bridge's SSE stream: decrypted
// to the payload Slack sent, in order, and resumable with Last-Event-ID.
func stepStream(t *testing.T, e *env) {
	evs := readSSE(t, e, "", "Ev0FLOW", 25)
	for i, ev := range evs {
		if want := fmt.Sprintf("Ev0FLOW%04d", i); ev.eventID != want {
			t.Fatalf("SSE event %d is %s, want %s", i, ev.eventID, want)
		}
		var got, want any
		if err := json.Unmarshal(ev.payload, &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e.postedBody(ev.eventID), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("SSE payload of %s differs from what Slack sent:\n got %s\nwant %s", ev.eventID, ev.payload, e.postedBody(ev.eventID))
		}
	}
	resumed := readSSE(t, e, evs[9].id, "Ev0FLOW", 15)
	if resumed[0].eventID != "Ev0FLOW0010" || resumed[14].eventID != "Ev0FLOW0024" {
		t.Errorf("resume after %s gave %s … %s, want Ev0FLOW0010 … Ev0FLOW0024", evs[9].id, resumed[0].eventID, resumed[14].eventID)
	}
}

// stepSlackRetries re-sends events as Slack retries would, to both
// replicas: the shared event_id dedup answers 200 and queues nothing. A
// sentinel event posted afterwards proves it: delivery is in order, so any
// wrongly queued copy would arrive before the sentinel.
func stepSlackRetries(t *testing.T, e *env, a, b *replica) {
	for i, r := range []*replica{b, a, b} {
		if err := e.repostEvent(r, fmt.Sprintf("Ev0FLOW%04d", i), i+1); err != nil {
			t.Fatalf("Slack retry: %v", err)
		}
	}
	if err := e.postEvent(a, "Ev0SENTINEL1", 900); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sentinel event", 30*time.Second, func() bool { return e.recv.received([]string{"Ev0SENTINEL1"}) == 1 })
	_, count, _, _ := e.recv.snapshot()
	for i := range 3 {
		if id := fmt.Sprintf("Ev0FLOW%04d", i); count[id] != 1 {
			t.Errorf("after Slack retries %s was delivered %d times, want 1", id, count[id])
		}
	}
}

// stepInteractivityAndCommands sends a block_actions interaction and a slash
// command through replica A; the bridge forwards each as the form body Slack
// would have sent, signed (checked with slack-go by the receiver).
func stepInteractivityAndCommands(t *testing.T, e *env, a *replica) {
	payload := `{"type":"block_actions","team":{"id":"` + e.orgID + `","domain":"e2e"},"user":{"id":"U0HUMAN","team_id":"` + e.orgID +
		`"},"trigger_id":"123.456.abc","response_url":"https://hooks.slack.invalid/actions/1","actions":[{"action_id":"approve","value":"yes & <go>"}]}`
	if err := postSigned(a, "/slack/interactivity", "application/x-www-form-urlencoded",
		[]byte(url.Values{"payload": {payload}}.Encode()), 0); err != nil {
		t.Fatal(err)
	}
	command := url.Values{"command": {"/relay"}, "text": {"status please"}, "team_id": {e.orgID}, "user_id": {"U0HUMAN"},
		"channel_id": {"C0E2E"}, "trigger_id": {"123.456.def"}, "response_url": {"https://hooks.slack.invalid/commands/1"}}
	if err := postSigned(a, "/slack/commands", "application/x-www-form-urlencoded", []byte(command.Encode()), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the interaction and the slash command at the receiver", 30*time.Second, func() bool {
		return len(e.recv.formsReceived()) == 2
	})
	forms := e.recv.formsReceived()
	var got, want any
	if err := json.Unmarshal([]byte(forms[0].Get("payload")), &got); err != nil {
		t.Fatalf("forwarded interaction: %v (form %v)", err, forms[0])
	}
	_ = json.Unmarshal([]byte(payload), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("forwarded interaction payload\n got %s\nwant %s", forms[0].Get("payload"), payload)
	}
	if !reflect.DeepEqual(forms[1], command) {
		t.Errorf("forwarded slash command\n got %v\nwant %v", forms[1], command)
	}
}

// stepSecondAgent re-installs the app (through replica B this time), which
// issues a fresh registration token and keeps the first agent, and registers
// a second agent on replica A only. Events queued while the second bridge is
// not running reach both agents, each sealed to its own key; while they wait
// in Redis, no plaintext (event text, reply text, bot token, access or
// registration tokens) is to be found there. Then the second bridge starts
// and receives its backlog in order.
func stepSecondAgent(t *testing.T, e *env, a, b *replica) {
	org, token := e.install(b)
	if org != e.orgID {
		t.Fatalf("re-install gave org %q, want %q", org, e.orgID)
	}
	two := e.newAgent("two")
	if out := two.register(a.url, org, token); !strings.Contains(out, "Registered with "+a.url) {
		t.Fatalf("second bridge register:\n%s", out)
	}
	const n = 10
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev0FAN%04d", i)
		if err := e.postEvent(a, ids[i], 30000+i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the fan-out events at the first agent", 30*time.Second, func() bool { return e.recv.received(ids) == n })

	// The second agent's copies are queued in Redis now: look for plaintext.
	canaries := map[string]string{
		"event text":                  "message 30003 of Ev0FAN0003",
		"reply text":                  "reply one (edited)",
		"second registration token":   token,
		"first agent's access token":  envValue(t, e.bridgeCfg, bridge.EnvAccessToken),
		"second agent's access token": envValue(t, two.bridgeCfg, bridge.EnvAccessToken),
	}
	for _, c := range e.fake.CallsTo("auth.test") {
		canaries["bot token"] = c.Token
	}
	values := redisValues(t, e.redis)
	sealed := 0
	for _, v := range values {
		if isSealedCopy(v) {
			sealed++ // a ciphertext (the event bodies are ~700 bytes)
		}
		for what, c := range canaries {
			if c == "" {
				t.Fatalf("no canary value for %s", what)
			}
			if strings.Contains(v, c) {
				t.Errorf("Redis holds the %s in plaintext: %.200q", what, v)
			}
		}
	}
	if sealed < n {
		t.Errorf("found %d sealed messages in Redis, want ≥ %d queued for the second agent (%d values scanned)", sealed, n, len(values))
	}

	two.startBridge()
	waitFor(t, "the backlog at the second agent", 30*time.Second, func() bool { return two.recv.received(ids) == n })
	order, _, _, _ := two.recv.snapshot()
	if strings.Join(order, ",") != strings.Join(ids, ",") {
		t.Errorf("second agent order\n got %s\nwant %s", strings.Join(order, ","), strings.Join(ids, ","))
	}
	for _, id := range ids {
		if got, want := two.recv.body(id), e.postedBody(id); !bytes.Equal(got, want) {
			t.Errorf("second agent: %s body differs:\n got %s\nwant %s", id, got, want)
		}
	}
}

// longBase64 matches a long run of standard base64, as earlier versions
// stored a sealed box.
var longBase64 = regexp.MustCompile(`[A-Za-z0-9+/]{400,}={0,2}`)

// isSealedCopy reports whether a Redis value is a stored inbox copy holding
// a sealed box of at least 300 bytes: the binary stored form
// (protocol.AppendStored) or base64 in the JSON of earlier versions.
func isSealedCopy(v string) bool {
	if longBase64.MatchString(v) {
		return true
	}
	m, err := protocol.ParseStored("x", []byte(v))
	return err == nil && v[0] != '{' && len(m.Encrypted) >= 400
}

// envValue reads one variable of a bridge configuration file.
func envValue(t *testing.T, path, key string) string {
	t.Helper()
	f, err := bridge.ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.Get(key)
	return v
}

// redisValues returns every key name and value under the run's prefix.
func redisValues(t *testing.T, r *redisEnv) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	iter := r.rdb.Scan(ctx, 0, r.prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		out = append(out, k)
		typ, err := r.rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		switch typ {
		case "string":
			out = append(out, r.rdb.Get(ctx, k).Val())
		case "hash":
			for f, v := range r.rdb.HGetAll(ctx, k).Val() {
				out = append(out, f, v)
			}
		case "list":
			out = append(out, r.rdb.LRange(ctx, k, 0, -1).Val()...)
		case "set":
			out = append(out, r.rdb.SMembers(ctx, k).Val()...)
		case "zset":
			out = append(out, r.rdb.ZRange(ctx, k, 0, -1).Val()...)
		case "stream":
			for _, m := range r.rdb.XRange(ctx, k, "-", "+").Val() {
				for f, v := range m.Values {
					out = append(out, f, fmt.Sprint(v))
				}
			}
		case "none": // expired meanwhile
		default:
			t.Fatalf("unexpected Redis type %s of %s", typ, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

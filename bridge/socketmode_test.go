package bridge_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

// smBridge is a running bridge with Socket Mode as its sink and its local
// API served.
type smBridge struct {
	*running
	fb   *bridgetest.FakeBroker
	base string // http://127.0.0.1:port
}

func startSocketBridge(t testing.TB, ackTimeout time.Duration, mod func(*bridge.Config)) *smBridge {
	t.Helper()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	ln := apiListener(t)
	cfg := baseConfig(t, id, t.TempDir())
	cfg.SocketMode = true
	cfg.ListenAddr = ln.Addr().String()
	if mod != nil {
		mod(&cfg)
	}
	cfg = bridge.WithSocketAckTimeout(cfg, ackTimeout)
	r := start(t, cfg)
	base := serveAPI(t, ln, r.b)
	return &smBridge{running: r, fb: fb, base: base}
}

// smApp is a real slack-go Socket Mode app connected to the bridge.
type smApp struct {
	client   *socketmode.Client
	requests chan socketmode.Event
	hellos   chan socketmode.Event
	discos   chan socketmode.Event
	cancel   context.CancelFunc
	done     chan struct{}
}

func connectApp(t testing.TB, base string) *smApp {
	t.Helper()
	api := slack.New("xoxb-any", slack.OptionAppLevelToken("xapp-any"), slack.OptionAPIURL(base+"/api/"))
	c := socketmode.New(api, socketmode.OptionDebug(os.Getenv("BRIDGE_TEST_LOG") != ""))
	ctx, cancel := context.WithCancel(context.Background())
	a := &smApp{client: c, requests: make(chan socketmode.Event, 100), hellos: make(chan socketmode.Event, 10),
		discos: make(chan socketmode.Event, 10), cancel: cancel, done: make(chan struct{})}
	go func() { _ = c.RunContext(ctx) }()
	go func() {
		defer close(a.done)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-c.Events:
				var to chan socketmode.Event
				switch ev.Type {
				case socketmode.EventTypeEventsAPI, socketmode.EventTypeInteractive, socketmode.EventTypeSlashCommand:
					to = a.requests
				case socketmode.EventTypeHello:
					to = a.hellos
				case socketmode.EventTypeDisconnect:
					to = a.discos
				default:
					continue
				}
				select {
				case to <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(a.close)
	a.hello(t)
	return a
}

func (a *smApp) close() {
	a.cancel()
	<-a.done
}

func (a *smApp) hello(t testing.TB) socketmode.Event {
	t.Helper()
	select {
	case ev := <-a.hellos:
		return ev
	case <-time.After(testTimeout):
		t.Fatal("no hello from the bridge")
		return socketmode.Event{}
	}
}

func (a *smApp) next(t testing.TB) socketmode.Event {
	t.Helper()
	select {
	case ev := <-a.requests:
		return ev
	case <-time.After(testTimeout):
		t.Fatal("no Socket Mode envelope")
		return socketmode.Event{}
	}
}

func (a *smApp) ack(t testing.TB, ev socketmode.Event, payload any) {
	t.Helper()
	var err error
	if payload == nil {
		err = a.client.Ack(*ev.Request)
	} else {
		err = a.client.Ack(*ev.Request, payload)
	}
	if err != nil {
		t.Fatalf("ack: %v", err)
	}
}

func slashCommand(text string) protocol.Envelope {
	payload, _ := json.Marshal(map[string]string{"command": "/deploy", "text": text, "channel_id": "C0CMD0001", "user_id": "U1",
		"team_id": testOrg, "response_url": "https://hooks.slack.com/commands/x", "trigger_id": "1.2.3"})
	return protocol.Envelope{Source: protocol.SourceSlack, Type: protocol.TypeSlashCommand, BrokerTimestamp: time.Now().Unix(), Payload: payload}
}

func blockAction(actionID string) protocol.Envelope {
	payload, _ := json.Marshal(map[string]any{"type": "block_actions", "team": map[string]string{"id": testOrg},
		"user": map[string]string{"id": "U1"}, "channel": map[string]string{"id": "C0ACT0001"},
		"actions": []map[string]string{{"action_id": actionID, "type": "button", "value": "v"}}, "trigger_id": "1.2.3"})
	return protocol.Envelope{Source: protocol.SourceSlack, Type: "block_actions", BrokerTimestamp: time.Now().Unix(), Payload: payload}
}

// The three envelope kinds reach a real slack-go app; the broker sees the
// ack of each only after the app acked its envelope.
func TestSocketModeDeliversAndAcksAfterApp(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, nil)
	app := connectApp(t, sb.base)
	cases := []struct {
		name string
		env  protocol.Envelope
		typ  socketmode.EventType
		rsp  bool
		text string
	}{
		{"events_api", slackEvent("hello", "C0EVT0001", "1700000000.000100"), socketmode.EventTypeEventsAPI, false, "hello"},
		{"interactive", blockAction("approve"), socketmode.EventTypeInteractive, false, "approve"},
		{"slash_commands", slashCommand("prod"), socketmode.EventTypeSlashCommand, true, "prod"},
	}
	for _, tc := range cases {
		id := sb.fb.Enqueue(tc.env)
		ev := app.next(t)
		if ev.Type != tc.typ {
			t.Fatalf("%s: envelope type %s", tc.name, ev.Type)
		}
		if ev.Request.EnvelopeID == "" || ev.Request.RetryAttempt != 0 || ev.Request.RetryReason != "" {
			t.Fatalf("%s: envelope %+v", tc.name, ev.Request)
		}
		if ev.Request.AcceptsResponsePayload != tc.rsp {
			t.Fatalf("%s: accepts_response_payload %v", tc.name, ev.Request.AcceptsResponsePayload)
		}
		if !strings.Contains(string(ev.Request.Payload), tc.text) {
			t.Fatalf("%s: payload %s", tc.name, ev.Request.Payload)
		}
		if got := sb.fb.Acked(); len(got) != 0 && got[len(got)-1] == id {
			t.Fatalf("%s: acked at the broker before the app acked", tc.name)
		}
		app.ack(t, ev, nil)
		waitFor(t, sb.fb, tc.name+" acked", func() bool { a := sb.fb.Acked(); return len(a) > 0 && a[len(a)-1] == id })
	}
	if n := sb.fb.HandedOut("m-1"); n != 1 {
		t.Fatalf("m-1 handed out %d times", n)
	}
}

// An envelope not acked in time comes again with retry_attempt + 1 and
// retry_reason "timeout"; only the ack of the redelivery acks the message.
func TestSocketModeRedeliversUnacked(t *testing.T) {
	t.Parallel()
	if d := bridge.SocketAckTimeout(bridge.Config{}); d != 3*time.Second {
		t.Fatalf("default ack timeout %s, want Slack's 3s", d)
	}
	sb := startSocketBridge(t, 100*time.Millisecond, nil)
	app := connectApp(t, sb.base)
	id := sb.fb.Enqueue(slackEvent("retry me", "C0EVT0001", "1700000000.000200"))
	first := app.next(t)
	if first.Request.RetryAttempt != 0 {
		t.Fatalf("first attempt %d", first.Request.RetryAttempt)
	}
	second := app.next(t) // not acking the first
	if second.Request.RetryAttempt != 1 || second.Request.RetryReason != "timeout" {
		t.Fatalf("redelivery attempt %d reason %q", second.Request.RetryAttempt, second.Request.RetryReason)
	}
	if second.Request.EnvelopeID == first.Request.EnvelopeID {
		t.Fatal("redelivery reused the envelope id")
	}
	if len(sb.fb.Acked()) != 0 {
		t.Fatal("acked at the broker before any envelope was acked")
	}
	app.ack(t, second, nil)
	waitFor(t, sb.fb, "ack", func() bool { return equalStrings(sb.fb.Acked(), []string{id}) })
}

// Two connections share the events: each event reaches exactly one of
// them, and both get some.
func TestSocketModeConnectionsShareEvents(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, nil)
	a1 := connectApp(t, sb.base)
	a2 := connectApp(t, sb.base)
	const n = 6
	for i := range n {
		sb.fb.Enqueue(slackEvent("e", "C0EVT0001", "1700000000.00030"+string(rune('0'+i))))
	}
	got := map[string]int{}
	per := [2]int{}
	for range n {
		var ev socketmode.Event
		var app *smApp
		select {
		case ev = <-a1.requests:
			app, per[0] = a1, per[0]+1
		case ev = <-a2.requests:
			app, per[1] = a2, per[1]+1
		case <-time.After(testTimeout):
			t.Fatal("events missing")
		}
		got[string(ev.Request.Payload)]++
		app.ack(t, ev, nil)
	}
	waitFor(t, sb.fb, "all acked", func() bool { return len(sb.fb.Acked()) == n })
	if h := sb.b.Health(); h.SocketModeConnections != 2 {
		t.Fatalf("health: %d Socket Mode connections, want 2", h.SocketModeConnections)
	}
	if per[0] == 0 || per[1] == 0 {
		t.Fatalf("connections got %v events; want both to get some", per)
	}
	for p, c := range got {
		if c != 1 {
			t.Fatalf("event %s delivered %d times", p, c)
		}
	}
}

// With no client connected nothing is acked and the message is not pulled
// again: a client that drops an envelope unacked leaves it at the broker,
// and the next client gets it.
func TestSocketModeNoClientNothingAcked(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, nil)
	app := connectApp(t, sb.base)
	id := sb.fb.Enqueue(slackEvent("held", "C0EVT0001", "1700000000.000400"))
	ev := app.next(t)
	if ev.Request.RetryAttempt != 0 {
		t.Fatalf("attempt %d", ev.Request.RetryAttempt)
	}
	app.close() // gone without acking
	app2 := connectApp(t, sb.base)
	ev2 := app2.next(t)
	if len(sb.fb.Acked()) != 0 {
		t.Fatal("acked while no client had acked it")
	}
	if ev2.Request.RetryAttempt != 1 {
		t.Fatalf("second client got attempt %d, want 1", ev2.Request.RetryAttempt)
	}
	app2.ack(t, ev2, nil)
	waitFor(t, sb.fb, "ack", func() bool { return equalStrings(sb.fb.Acked(), []string{id}) })
	if n := sb.fb.HandedOut(id); n != 1 {
		t.Fatalf("pulled %d times, want 1 (kept locally while no client was connected)", n)
	}
}

// A held slash command's ack payload goes to the broker as the respond,
// signed and encrypted (verified by the fake broker), before the ack; the
// pulls declare the inbox.respond capability.
func TestSocketModeRespondWithAckPayload(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, nil)
	app := connectApp(t, sb.base)
	cases := []struct {
		name    string
		payload any
		want    string
	}{
		{"object", map[string]any{"response_type": "ephemeral", "text": "deploying"}, `{"response_type":"ephemeral","text":"deploying"}`},
		{"string", "plain answer", `{"text":"plain answer"}`},
		{"none", nil, ""},
	}
	for _, tc := range cases {
		before := len(sb.fb.Responds())
		id := sb.fb.EnqueueHeld(slashCommand(tc.name), time.Now().Add(time.Minute))
		ev := app.next(t)
		if !ev.Request.AcceptsResponsePayload {
			t.Fatalf("%s: accepts_response_payload false on a held command", tc.name)
		}
		app.ack(t, ev, tc.payload)
		waitFor(t, sb.fb, tc.name+" acked", func() bool { a := sb.fb.Acked(); return len(a) > 0 && a[len(a)-1] == id })
		rs := sb.fb.Responds()
		if tc.want == "" {
			if len(rs) != before {
				t.Fatalf("%s: respond sent for an ack without payload", tc.name)
			}
			continue
		}
		if len(rs) != before+1 {
			t.Fatalf("%s: %d responds, want %d", tc.name, len(rs), before+1)
		}
		r := rs[len(rs)-1]
		if r.MessageID != id || string(r.Body) != tc.want || r.AckedBefore {
			t.Fatalf("%s: respond %+v body %s", tc.name, r, r.Body)
		}
	}
	metas := sb.fb.PullMetas()
	if len(metas) == 0 || !strings.Contains(string(metas[0]), `"capabilities":["inbox.respond"]`) {
		t.Fatalf("pull meta %s lacks the inbox.respond capability", metas)
	}
}

// The endpoint speaks the protocol as Slack does: hello with
// num_connections, connection_info.app_id and debug_info; a ticket works
// once; browsers and other Hosts are refused; shutdown sends disconnect
// (refresh_requested).
func TestSocketModeHandshakeAndShutdown(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, func(c *bridge.Config) { c.SocketModeAppID = "A0TESTAPP1" })
	open := func() string {
		req, _ := http.NewRequest(http.MethodPost, sb.base+"/api/apps.connections.open", nil)
		req.Header.Set("Authorization", "Bearer xapp-anything")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			OK  bool   `json:"ok"`
			URL string `json:"url"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || !out.OK || !strings.HasPrefix(out.URL, "ws://127.0.0.1:") {
			t.Fatalf("apps.connections.open: %+v %v", out, err)
		}
		return out.URL
	}
	// No token: not_authed, like Slack.
	resp, err := http.Post(sb.base+"/api/apps.connections.open", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	var na struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&na)
	resp.Body.Close()
	if na.OK || na.Error != "not_authed" {
		t.Fatalf("no token: %+v", na)
	}

	refused := []struct {
		name   string
		header http.Header
		status int
	}{
		{"browser origin", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"fetch metadata", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"rebinding host", http.Header{"Host": {"evil.example:7890"}}, http.StatusForbidden},
	}
	for _, tc := range refused {
		u := open()
		d := websocket.Dialer{}
		h := tc.header.Clone()
		if host := h.Get("Host"); host != "" {
			h.Del("Host")
			addr := strings.TrimPrefix(sb.base, "http://")
			u = strings.Replace(u, addr, host, 1)
			d.NetDial = func(network, _ string) (net.Conn, error) { return net.Dial(network, addr) }
		}
		c, resp, err := d.Dial(u, h)
		if err == nil {
			c.Close()
			t.Fatalf("%s: connected", tc.name)
		}
		if resp == nil || resp.StatusCode != tc.status {
			t.Fatalf("%s: %v %v", tc.name, resp, err)
		}
	}

	u := open()
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://api.slack.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var hello struct {
		Type           string `json:"type"`
		NumConnections int    `json:"num_connections"`
		ConnectionInfo struct {
			AppID string `json:"app_id"`
		} `json:"connection_info"`
		DebugInfo struct {
			Host string `json:"host"`
		} `json:"debug_info"`
	}
	if err := c.ReadJSON(&hello); err != nil {
		t.Fatal(err)
	}
	if hello.Type != "hello" || hello.NumConnections != 1 || hello.ConnectionInfo.AppID != "A0TESTAPP1" || hello.DebugInfo.Host == "" {
		t.Fatalf("hello %+v", hello)
	}
	if c2, resp, err := websocket.DefaultDialer.Dial(u, nil); err == nil {
		c2.Close()
		t.Fatal("a used ticket connected again")
	} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reused ticket: %v %v", resp, err)
	}

	// Shutdown: the client is told to reconnect.
	sb.cancel()
	closed := make(chan struct{})
	go func() { defer close(closed); sb.b.Close() }()
	var disco struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	if err := c.ReadJSON(&disco); err != nil {
		t.Fatal(err)
	}
	if disco.Type != "disconnect" || disco.Reason != "refresh_requested" {
		t.Fatalf("shutdown message %+v", disco)
	}
	c.Close() // the bridge stops waiting for the close handshake
	<-closed
}

// With a local API token, apps.connections.open wants that token as the
// app-level token; anything else is answered like Slack (invalid_auth).
func TestSocketModeOpenWithLocalToken(t *testing.T) {
	t.Parallel()
	const local = "local-token-0123456789abcdef"
	sb := startSocketBridge(t, 3*time.Second, func(c *bridge.Config) { c.LocalToken = local })
	cases := []struct{ token, want string }{
		{"", "not_authed"},
		{"xapp-any", "invalid_auth"},
		{local, ""},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(http.MethodPost, sb.base+"/api/apps.connections.open", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
			URL   string `json:"url"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if tc.want == "" {
			if !out.OK || !strings.Contains(out.URL, bridge.SocketModePath+"?ticket=") {
				t.Fatalf("local token: %+v", out)
			}
			continue
		}
		if out.OK || out.Error != tc.want {
			t.Fatalf("token %q: %+v, want %s", tc.token, out, tc.want)
		}
	}
	// A slack-go app with the local token as its app-level token connects.
	api := slack.New(local, slack.OptionAppLevelToken(local), slack.OptionAPIURL(sb.base+"/api/"))
	info, u, err := socketmode.New(api).OpenContext(context.Background())
	if err != nil || info == nil || !strings.HasPrefix(u, "ws://") {
		t.Fatalf("OpenContext: %v %q", err, u)
	}
}

// After its lifetime a connection gets disconnect (refresh_requested); the
// slack-go client reconnects by itself and keeps receiving events (the
// raw protocol message is checked in TestSocketModeHandshakeAndShutdown).
func TestSocketModeRefreshReconnects(t *testing.T) {
	t.Parallel()
	sb := startSocketBridge(t, 3*time.Second, func(c *bridge.Config) { *c = bridge.WithSocketRefresh(*c, 300*time.Millisecond) })
	app := connectApp(t, sb.base)
	// slack-go handles disconnect itself (no event): it reconnects, which
	// the bridge greets with a new hello.
	app.hello(t) // reconnected
	id := sb.fb.Enqueue(slackEvent("after refresh", "C0EVT0001", "1700000000.000500"))
	ev := app.next(t)
	app.ack(t, ev, nil)
	waitFor(t, sb.fb, "ack", func() bool { return equalStrings(sb.fb.Acked(), []string{id}) })
}

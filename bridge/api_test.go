package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// sseStream reads events from GET /events.
type sseStream struct {
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

func openStream(t testing.TB, base, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("GET /events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	s.sc.Buffer(make([]byte, 1<<20), 1<<20)
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() { s.cancel(); s.resp.Body.Close() }

// next returns the next event, skipping comments and the retry field.
func (s *sseStream) next(t testing.TB) sseEvent {
	t.Helper()
	type res struct {
		ev  sseEvent
		err string
	}
	ch := make(chan res, 1)
	go func() {
		var ev sseEvent
		for s.sc.Scan() {
			line := s.sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					ch <- res{ev: ev}
					return
				}
			case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
		ch <- res{err: "stream ended"}
	}()
	select {
	case r := <-ch:
		if r.err != "" {
			t.Fatal(r.err)
		}
		return r.ev
	case <-time.After(testTimeout):
		t.Fatal("no SSE event")
		return sseEvent{}
	}
}

func streamBridge(t *testing.T, buffer int) (*bridgetest.FakeBroker, *running, string) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Stream = true
	cfg.StreamBuffer = buffer
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	return fb, r, serveAPI(t, ln, r.b)
}

func TestSSEDeliveryAndResume(t *testing.T) {
	fb, _, base := streamBridge(t, 100)
	s := openStream(t, base, "")
	m1 := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	m2 := fb.Enqueue(slackEvent("b", "C1", "1.2"))
	e1, e2 := s.next(t), s.next(t)
	var ev bridge.Event
	if err := json.Unmarshal([]byte(e1.data), &ev); err != nil || ev.MessageID != m1 || ev.ThreadID != "C1:1.1" || ev.Type != "event_callback" {
		t.Fatalf("first event %s (%v)", e1.data, err)
	}
	if !strings.Contains(e2.data, m2) || e2.id <= e1.id {
		t.Fatalf("second event %+v after %+v", e2, e1)
	}
	s.close()

	// While the consumer is away two more events arrive.
	m3 := fb.Enqueue(slackEvent("c", "C1", "1.3"))
	m4 := fb.Enqueue(slackEvent("d", "C1", "1.4"))
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })

	// Resuming after e2 yields exactly m3 and m4.
	s2 := openStream(t, base, e2.id)
	if got := s2.next(t); !strings.Contains(got.data, m3) {
		t.Fatalf("resume: got %s, want %s", got.data, m3)
	}
	if got := s2.next(t); !strings.Contains(got.data, m4) {
		t.Fatalf("resume: got %s, want %s", got.data, m4)
	}
	// A consumer without Last-Event-ID gets the whole buffer from m1.
	s3 := openStream(t, base, "")
	if got := s3.next(t); !strings.Contains(got.data, m1) {
		t.Fatalf("fresh consumer got %s first", got.data)
	}
	// last_event_id query parameter works like the header.
	req, _ := http.NewRequest(http.MethodGet, base+"/events?last_event_id="+url.QueryEscape(e1.id), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s4 := &sseStream{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	if got := s4.next(t); !strings.Contains(got.data, m2) {
		t.Fatalf("query resume got %s", got.data)
	}
}

// post calls the local API.
func post(t testing.TB, base, path, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if h, ok := hdr["Host"]; ok {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func apiBridge(t *testing.T, mutate func(*bridge.Config)) (*bridgetest.FakeBroker, *bridge.Bridge, string) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Stream = true
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := bridge.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return fb, b, serveAPI(t, ln, b)
}

func TestLocalAPIRelaysToBroker(t *testing.T) {
	fb, b, base := apiBridge(t, nil)
	cases := []struct {
		path, body string
		want       bridgetest.Sent
		wantTS     bool
	}{
		{"/send", `{"channel":"C123","text":"hi"}`, bridgetest.Sent{Action: protocol.ActionPostMessage, Routing: protocol.Routing{Channel: "C123"}, Body: protocol.SendBody{Text: "hi"}}, true},
		{"/send", `{"channel":"G1","text":"t","thread_ts":"1771464999.000100","blocks":[{"type":"divider"}]}`, bridgetest.Sent{Action: protocol.ActionPostMessage, Routing: protocol.Routing{Channel: "G1", ThreadTS: "1771464999.000100"}, Body: protocol.SendBody{Text: "t", Blocks: json.RawMessage(`[{"type":"divider"}]`)}}, true},
		{"/reply", `{"thread_id":"D9:1.2","text":"answer"}`, bridgetest.Sent{Action: protocol.ActionPostMessage, Routing: protocol.Routing{Channel: "D9", ThreadTS: "1.2"}, Body: protocol.SendBody{Text: "answer"}}, true},
		{"/reply", `{"thread_id":"C5","text":"top"}`, bridgetest.Sent{Action: protocol.ActionPostMessage, Routing: protocol.Routing{Channel: "C5"}, Body: protocol.SendBody{Text: "top"}}, true},
		{"/react", `{"channel":"C1","timestamp":"1.2","emoji":":+1:"}`, bridgetest.Sent{Action: protocol.ActionReact, Routing: protocol.Routing{Channel: "C1", Timestamp: "1.2", Emoji: "+1"}, Body: protocol.SendBody{Emoji: "+1"}}, false},
		{"/update", `{"channel":"C1","timestamp":"1.2","text":"edited"}`, bridgetest.Sent{Action: protocol.ActionUpdate, Routing: protocol.Routing{Channel: "C1", Timestamp: "1.2"}, Body: protocol.SendBody{Text: "edited"}}, true},
	}
	for i, tc := range cases {
		st, out, _ := post(t, base, tc.path, tc.body, nil)
		if st != 200 || out["ok"] != true {
			t.Fatalf("%s %s: %d %v", tc.path, tc.body, st, out)
		}
		if tc.wantTS && out["ts"] == "" {
			t.Fatalf("%s: no ts", tc.path)
		}
		sends := fb.Sends()
		got := sends[i]
		if got.Action != tc.want.Action || got.Routing != tc.want.Routing || got.Body.Text != tc.want.Body.Text ||
			got.Body.Emoji != tc.want.Body.Emoji || string(got.Body.Blocks) != string(tc.want.Body.Blocks) {
			t.Fatalf("%s: broker got %+v, want %+v", tc.path, got, tc.want)
		}
	}
	// Every send used a fresh nonce (replay protection at the broker).
	seen := map[string]bool{}
	for _, s := range fb.Sends() {
		if seen[s.Nonce] {
			t.Fatal("nonce reused")
		}
		seen[s.Nonce] = true
	}
	if h := b.Health(); h.LastOutboundAt == nil {
		t.Fatal("health lacks last outbound")
	}
}

func TestLocalAPIPassesBrokerErrorsOn(t *testing.T) {
	fb, _, base := apiBridge(t, nil)
	fb.AnswerSends(&bridgetest.Failure{Status: 502, Message: "channel_not_found"})
	st, out, _ := post(t, base, "/send", `{"channel":"C404","text":"x"}`, nil)
	if st != 502 || out["error"] != "channel_not_found" || out["ok"] != false {
		t.Fatalf("got %d %v", st, out)
	}
	fb.AnswerSends(&bridgetest.Failure{Status: 429, Message: "ratelimited", Header: http.Header{"Retry-After": {"7"}}})
	st, out, hdr := post(t, base, "/send", `{"channel":"C1","text":"x"}`, nil)
	if st != 429 || hdr.Get("Retry-After") != "7" || out["error"] != "ratelimited" {
		t.Fatalf("got %d %v %v", st, out, hdr)
	}
	fb.Close()
	st, out, _ = post(t, base, "/send", `{"channel":"C1","text":"x"}`, nil)
	if st != 502 || !strings.Contains(out["error"].(string), "unreachable") {
		t.Fatalf("broker down: %d %v", st, out)
	}
}

func TestLocalAPIValidation(t *testing.T) {
	fb, _, base := apiBridge(t, nil)
	fb.AnswerSends(&bridgetest.Failure{Status: 502, Message: "not_in_channel"})
	long := strings.Repeat("é", bridge.MaxTextLength+1)
	cases := []struct {
		path, body string
		status     int
		want       string
	}{
		{"/send", `{"text":"hi"}`, 400, "channel is required"},
		{"/send", `{"channel":"general","text":"hi"}`, 400, "channel id"},
		{"/send", `{"channel":"c123","text":"hi"}`, 400, "channel id"},
		{"/send", `{"channel":"U123","text":"hi"}`, 400, "channel id"},
		{"/send", `{"channel":"C123"}`, 400, "text is required"},
		{"/send", `{"channel":"C123","text":"   "}`, 400, "text is required"},
		{"/send", `{"channel":"C123","text":"` + long + `"}`, 400, "limit is 40000"},
		{"/send", `{"channel":"C123","text":"x","thread_ts":"yesterday"}`, 400, "thread_ts"},
		{"/send", `{"channel":"C123","text":"x","blocks":{"type":"divider"}}`, 400, "blocks must be a JSON array"},
		{"/send", `{"channel":"C123","text":"x"}`, 502, "not_in_channel"}, // valid: reaches the broker
		{"/send", `{"channel":"C123","text":"x","thread-ts":"1.2"}`, 400, `unknown field "thread-ts" (did you mean "thread_ts"?)`},
		{"/send", `{"channel":"C123","text":"x","Thread-TS":"1.2"}`, 400, `(did you mean "thread_ts"?)`},
		{"/send", `{"channel":"C123","txt":"x"}`, 400, `unknown field "txt" (did you mean "text"?)`},
		{"/send", `{"channel":"C123","text":"x","extra":1}`, 400, `unknown field "extra"`},
		{"/reply", `{"thread":"C1:1.2","text":"x"}`, 400, `unknown field "thread"`},
		{"/send", "{\"channel\":\"C123\",\"text\":\"caf\xe9\"}", 400, "not valid UTF-8"},
		{"/send", "{\"channel\":\"C123\",\"text\":\"x\",\"blocks\":[{\"t\":\"\xff\"}]}", 400, "not valid UTF-8"},
		{"/send", `{"channel":"C123","text":"a\ud800b"}`, 400, "unpaired UTF-16 surrogate"},
		{"/send", `{"channel":"C123","text":"\udc00"}`, 400, "unpaired UTF-16 surrogate"},
		{"/send", `{"channel":"C123","text":"x\\ud800","blocks":[{"t":"\ud83d"}]}`, 400, "unpaired UTF-16 surrogate"},
		{"/send", `{"channel":"C123","text":"ok \ud83d\ude00 \\ud800"}`, 502, "not_in_channel"}, // a pair, and an escaped backslash: fine
		{"/send", sizedSend(bridge.MaxLocalBody), 502, "not_in_channel"},                        // exactly at the limit: reaches the broker
		{"/send", sizedSend(bridge.MaxLocalBody + 1), 413, "limit 640 KiB"},
		{"/send", `{"channel":123,"text":"x"}`, 400, `"channel" must be a string`},
		{"/send", `{"channel":"C1","text":"x"} {}`, 400, "trailing data"},
		{"/send", `not json`, 400, "invalid JSON"},
		{"/send", `{"channel":"C1","text":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "too large"},
		{"/send", `{"channel":"C1","text":"x"}]`, 400, "trailing data"},
		{"/react", `{"channel":"C1","timestamp":"1.2"}`, 400, "emoji is required"},
		{"/react", `{"channel":"C1","timestamp":"1.2","emoji":"Thumbs Up"}`, 400, "emoji name"},
		{"/react", `{"channel":"C1","emoji":"x"}`, 400, "timestamp is required"},
		{"/react", `{"channel":"C1","timestamp":"12","emoji":"x"}`, 400, "timestamp must be"},
		{"/reply", `{"text":"x"}`, 400, "thread_id is required"},
		{"/reply", `{"thread_id":"C1:abc","text":"x"}`, 400, "thread_id must be"},
		{"/reply", `{"thread_id":"nope","text":"x"}`, 400, "thread_id must be"},
		{"/update", `{"channel":"C1","text":"x"}`, 400, "timestamp is required"},
		{"/update", `{"channel":"C1","timestamp":"1.2"}`, 400, "text is required"},
	}
	for _, tc := range cases {
		st, out, _ := post(t, base, tc.path, tc.body, nil)
		msg, _ := out["error"].(string)
		if st != tc.status || out["ok"] != false || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %.60s: got %d %q, want %d containing %q", tc.path, tc.body, st, msg, tc.status, tc.want)
		}
	}
	if n := len(fb.Sends()); n != 3 {
		t.Fatalf("%d calls reached the broker, want only the three valid calls", n)
	}
	// Wrong methods and paths.
	resp, err := http.Get(base + "/send")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /send: %d", resp.StatusCode)
	}
}

func TestLocalAPIBrowserDefences(t *testing.T) {
	fb, _, base := apiBridge(t, nil)
	port := base[strings.LastIndex(base, ":")+1:]
	ok := map[string]string{"Host": "127.0.0.1:" + port}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{"Host": "127.0.0.1:" + port}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"loopback host", ok, 200},
		{"localhost host", map[string]string{"Host": "localhost:" + port}, 200},
		{"ipv6 loopback host", map[string]string{"Host": "[::1]:" + port}, 200},
		{"DNS rebinding host", map[string]string{"Host": "attacker.example:" + port}, 403},
		{"rebinding host without port", map[string]string{"Host": "attacker.example"}, 403},
		{"wrong port", map[string]string{"Host": "127.0.0.1:9999"}, 403},
		{"cross-site origin", with(map[string]string{"Origin": "https://evil.example"}), 403},
		{"null origin", with(map[string]string{"Origin": "null"}), 403},
		{"loopback origin", with(map[string]string{"Origin": "http://localhost:3000"}), 200},
		{"form post", with(map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), 415},
		{"text/plain post", with(map[string]string{"Content-Type": "text/plain"}), 415},
		{"no content type", with(map[string]string{"Content-Type": ""}), 415},
		{"json with charset", with(map[string]string{"Content-Type": "application/json; charset=utf-8"}), 200},
		{"fetch metadata cross-site", with(map[string]string{"Sec-Fetch-Site": "cross-site"}), 403},
	}
	for _, tc := range cases {
		st, out, _ := post(t, base, "/send", `{"channel":"C1","text":"x"}`, tc.hdr)
		if st != tc.status {
			t.Errorf("%s: got %d %v, want %d", tc.name, st, out, tc.status)
		}
	}
	want := 0
	for _, tc := range cases {
		if tc.status == 200 {
			want++
		}
	}
	if n := len(fb.Sends()); n != want {
		t.Fatalf("%d calls reached the broker, want %d", n, want)
	}
	// GET /events is guarded too (a page must not read the stream).
	req, _ := http.NewRequest(http.MethodGet, base+"/events", nil)
	req.Host = "attacker.example:" + port
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("rebinding GET /events: %d", resp.StatusCode)
	}
}

func TestLocalAPIToken(t *testing.T) {
	fb, _, base := apiBridge(t, func(c *bridge.Config) { c.LocalToken = "s3cret-local" })
	h := func(auth string) map[string]string {
		return map[string]string{"Authorization": auth}
	}
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong", 401}, {"Basic s3cret-local", 401}, {"Bearer s3cret-local", 200}} {
		st, _, _ := post(t, base, "/send", `{"channel":"C1","text":"x"}`, h(tc.auth))
		if st != tc.status {
			t.Errorf("auth %q: %d, want %d", tc.auth, st, tc.status)
		}
	}
	if len(fb.Sends()) != 1 {
		t.Fatal("unauthenticated call reached the broker")
	}
}

func TestAllowRemoteKeepsOriginCheck(t *testing.T) {
	fb, _, base := apiBridge(t, func(c *bridge.Config) { c.AllowRemote = true; c.LocalToken = "tok" })
	auth := "Bearer tok"
	if st, _, _ := post(t, base, "/send", `{"channel":"C1","text":"x"}`, map[string]string{"Host": "bridge.lan:7890", "Authorization": auth}); st != 200 {
		t.Fatalf("remote host with token: %d", st)
	}
	if st, _, _ := post(t, base, "/send", `{"channel":"C1","text":"x"}`, map[string]string{"Origin": "https://evil.example", "Authorization": auth}); st != 403 {
		t.Fatalf("cross-site origin with allow-remote: %d", st)
	}
	if len(fb.Sends()) != 1 {
		t.Fatal("sends")
	}
}

func TestHealth(t *testing.T) {
	_, r, base := streamBridge(t, 10)
	_ = r
	req, _ := http.NewRequest(http.MethodGet, base+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h bridge.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	if h.OrgID != testOrg || h.BrokerURL == "" {
		t.Fatalf("health %+v", h)
	}
}

func TestListenAddressMustBeLoopback(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	for _, tc := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:7890", false, true}, {"[::1]:7890", false, true}, {"localhost:7890", false, true},
		{"0.0.0.0:7890", false, false}, {":7890", false, false}, {"192.168.1.5:7890", false, false},
		{"0.0.0.0:7890", true, true}, {"nonsense", false, false},
	} {
		cfg := baseConfig(t, id, t.TempDir())
		cfg.Stream = true
		cfg.ListenAddr = tc.addr
		cfg.AllowRemote = tc.remote
		b, err := bridge.New(cfg, nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s remote=%v: %v", tc.addr, tc.remote, err)
		}
		if b != nil {
			b.Close()
		}
	}
}

// sizedSend returns a valid /send body of exactly n bytes (padding in a
// block's text).
func sizedSend(n int) string {
	head, tail := `{"channel":"C123","text":"x","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"`, `"}}]}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

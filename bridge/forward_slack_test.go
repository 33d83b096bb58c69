package bridge_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// fwdHit is one request the scripted local app received.
type fwdHit struct {
	body       string
	retryNum   string
	retryWhy   string
	verifiedOK bool
}

// scriptedApp is a local Slack app whose answer to each request is decided
// by the test; it verifies signatures with slack-go as a real app does.
type scriptedApp struct {
	hits   chan fwdHit
	answer func(h fwdHit, w http.ResponseWriter, r *http.Request)
}

func newScriptedApp(t testing.TB, answer func(h fwdHit, w http.ResponseWriter, r *http.Request)) (*scriptedApp, string) {
	a := &scriptedApp{hits: make(chan fwdHit, 100), answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sv, err := slack.NewSecretsVerifier(r.Header, localSecret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		h := fwdHit{body: string(body), retryNum: r.Header.Get("X-Slack-Retry-Num"), retryWhy: r.Header.Get("X-Slack-Retry-Reason"), verifiedOK: err == nil}
		a.hits <- h
		a.answer(h, w, r)
	}))
	t.Cleanup(srv.Close)
	return a, srv.URL + "/slack/events"
}

func (a *scriptedApp) next(t testing.TB) fwdHit {
	t.Helper()
	select {
	case h := <-a.hits:
		if !h.verifiedOK {
			t.Fatalf("forwarded request failed slack-go verification: %s", h.body)
		}
		return h
	case <-time.After(testTimeout):
		t.Fatal("local app received nothing")
		return fwdHit{}
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

func startForwardBridge(t *testing.T, url string, logs io.Writer, mod func(*bridge.Config)) (*bridgetest.FakeBroker, *running) {
	t.Helper()
	fb := bridgetest.New(t, testOrg)
	cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
	cfg.ForwardURL = url
	cfg.ForwardSigningSecret = []byte(localSecret)
	if mod != nil {
		mod(&cfg)
	}
	logger := testLogger(t)
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := bridge.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return fb, startBridge(t, b)
}

// A re-forward carries Slack's retry headers: X-Slack-Retry-Num counts the
// earlier attempts and X-Slack-Retry-Reason says why the last one failed.
func TestForwardRetryHeaders(t *testing.T) {
	t.Parallel()
	if d := bridge.ForwardTimeoutDefault(bridge.Config{}); d != 3*time.Second {
		t.Fatalf("default forward timeout %s, want Slack's 3s", d)
	}
	release := make(chan struct{})
	n := 0
	var mu sync.Mutex
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			select { // outlive the forward timeout
			case <-r.Context().Done():
			case <-release:
			}
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	defer close(release)
	// Attempt 2 outlives the forward timeout (the scenario); the others
	// answer at once, well within it even on a loaded machine.
	fb, _ := startForwardBridge(t, url, nil, func(c *bridge.Config) { c.ForwardTimeout = time.Second })
	id := fb.Enqueue(slackEvent("retry", "C0FWD0001", "1700000000.000100"))
	want := []struct{ num, why string }{{"", ""}, {"1", "http_error"}, {"2", "http_timeout"}}
	for i, w := range want {
		h := app.next(t)
		if h.retryNum != w.num || h.retryWhy != w.why {
			t.Fatalf("attempt %d: X-Slack-Retry-Num %q X-Slack-Retry-Reason %q, want %q %q", i, h.retryNum, h.retryWhy, w.num, w.why)
		}
	}
	waitFor(t, fb, "ack", func() bool { return equalStrings(fb.Acked(), []string{id}) })
}

// X-Slack-No-Retry: 1 on a non-2xx answer ends the retries: the event is
// acked and not forwarded again.
func TestForwardNoRetry(t *testing.T) {
	t.Parallel()
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		if strings.Contains(h.body, "refuse") {
			w.Header().Set("X-Slack-No-Retry", "1")
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	fb, _ := startForwardBridge(t, url, nil, nil)
	id1 := fb.Enqueue(slackEvent("refuse", "C0FWD0001", "1700000000.000100"))
	id2 := fb.Enqueue(slackEvent("fine", "C0FWD0001", "1700000000.000200"))
	if h := app.next(t); !strings.Contains(h.body, "refuse") {
		t.Fatalf("first forward %s", h.body)
	}
	if h := app.next(t); !strings.Contains(h.body, "fine") || h.retryNum != "" {
		t.Fatalf("second forward %s (retry %q): the refused event was forwarded again", h.body, h.retryNum)
	}
	waitFor(t, fb, "both acked", func() bool { return len(fb.Acked()) == 2 })
	if a := fb.Acked(); !(a[0] == id1 && a[1] == id2) {
		t.Fatalf("acked %v", a)
	}
}

// Events of one channel stay in order, and a slow event holds up only its
// own channel: the other channel's events are delivered while it hangs.
func TestForwardSlowChannelDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		if strings.Contains(h.body, "slow-1") {
			<-release
		}
	})
	fb := bridgetest.New(t, testOrg)
	cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
	cfg.ForwardURL, cfg.ForwardSigningSecret, cfg.ForwardTimeout = url, []byte(localSecret), time.Minute
	// Queue everything before the bridge starts: one pull takes all.
	fb.Enqueue(slackEvent("slow-1", "C0SLOW001", "1700000000.000100"))
	fb.Enqueue(slackEvent("fast-1", "C0FAST001", "1700000000.000200"))
	fb.Enqueue(slackEvent("slow-2", "C0SLOW001", "1700000000.000300"))
	fb.Enqueue(slackEvent("fast-2", "C0FAST001", "1700000000.000400"))
	start(t, cfg)
	var order []string
	seen := func(h fwdHit) {
		for _, k := range []string{"slow-1", "slow-2", "fast-1", "fast-2"} {
			if strings.Contains(h.body, k) {
				order = append(order, k)
			}
		}
	}
	// slow-1 hangs; both fast events still arrive, and slow-2 does not.
	for len(order) < 3 {
		seen(app.next(t))
	}
	if strings.Join(order, ",") != "slow-1,fast-1,fast-2" && strings.Join(order, ",") != "fast-1,slow-1,fast-2" && strings.Join(order, ",") != "fast-1,fast-2,slow-1" {
		t.Fatalf("order while slow-1 hangs: %v", order)
	}
	close(release)
	seen(app.next(t))
	if order[3] != "slow-2" {
		t.Fatalf("order %v", order)
	}
	waitFor(t, fb, "all acked", func() bool { return len(fb.Acked()) == 4 })
}

// A 401/403 from the local app is reported once, with the hint that the
// signing secret probably differs, however often it repeats.
func TestForwardUnauthorizedHintOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	fails := 3
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	logs := &logBuffer{}
	fb, _ := startForwardBridge(t, url, logs, nil)
	fb.Enqueue(slackEvent("a", "C0FWD0001", "1700000000.000100"))
	for range 4 {
		app.next(t)
	}
	waitFor(t, fb, "ack", func() bool { return len(fb.Acked()) == 1 })
	if n := logs.count("signing secret probably differs"); n != 1 {
		t.Fatalf("hint logged %d times, want once", n)
	}
}

// A forward signing secret shorter than 16 bytes is refused at start.
func TestForwardShortSecretRefused(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	for _, tc := range []struct {
		secret string
		ok     bool
	}{{"short", false}, {"fifteen-bytes!!", false}, {"sixteen-bytes!!!", true}} {
		cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
		cfg.ForwardURL, cfg.ForwardSigningSecret = "http://127.0.0.1:3000/slack/events", []byte(tc.secret)
		_, err := newBridge(t, cfg)
		if (err == nil) != tc.ok {
			t.Fatalf("secret of %d bytes: err %v", len(tc.secret), err)
		}
		if err != nil && (strings.Contains(err.Error(), tc.secret) || !strings.Contains(err.Error(), "16")) {
			t.Fatalf("error %q: should name the minimum and not the secret", err)
		}
	}
}

// In forward mode the local app's HTTP response body is the answer to a
// held request: JSON as is, plain text wrapped as {"text": …}, an empty
// body sends nothing.
func TestForwardRespondFromResponseBody(t *testing.T) {
	t.Parallel()
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(h.body, "json"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"response_action":"errors","errors":{"b":"no"}}`)
		case strings.Contains(h.body, "plain"):
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "deploying now")
		}
	})
	fb, _ := startForwardBridge(t, url, nil, nil)
	cases := []struct{ text, want string }{
		{"json", `{"response_action":"errors","errors":{"b":"no"}}`},
		{"plain", `{"text":"deploying now"}`},
		{"empty", ""},
	}
	for _, tc := range cases {
		before := len(fb.Responds())
		id := fb.EnqueueHeld(slashCommand(tc.text), time.Now().Add(time.Minute))
		app.next(t)
		waitFor(t, fb, tc.text+" acked", func() bool { a := fb.Acked(); return len(a) > 0 && a[len(a)-1] == id })
		rs := fb.Responds()
		if tc.want == "" {
			if len(rs) != before {
				t.Fatalf("%s: respond sent for an empty body", tc.text)
			}
			continue
		}
		if len(rs) != before+1 || rs[len(rs)-1].MessageID != id || string(rs[len(rs)-1].Body) != tc.want || rs[len(rs)-1].AckedBefore {
			t.Fatalf("%s: responds %+v", tc.text, rs)
		}
	}
	if m := fb.PullMetas(); len(m) == 0 || !strings.Contains(string(m[0]), "inbox.respond") {
		t.Fatalf("forward-mode pulls do not declare inbox.respond: %s", m)
	}
}

// startBridge runs b's poll loop in the background until the test ends.
func startBridge(t *testing.T, b *bridge.Bridge) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// An answer that comes after respond_by is still sent (the broker decides)
// and logged once as late, never dropped silently.
func TestRespondLateLoggedOnce(t *testing.T) {
	t.Parallel()
	app, url := newScriptedApp(t, func(h fwdHit, w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"text":"late"}`)
	})
	logs := &logBuffer{}
	fb, _ := startForwardBridge(t, url, logs, nil)
	fb.AnswerResponds(false) // the broker already answered Slack
	id := fb.EnqueueHeld(slashCommand("late"), time.Now().Add(-time.Second))
	app.next(t)
	waitFor(t, fb, "ack", func() bool { return equalStrings(fb.Acked(), []string{id}) })
	if rs := fb.Responds(); len(rs) != 1 || string(rs[0].Body) != `{"text":"late"}` {
		t.Fatalf("responds %+v", rs)
	}
	if n := logs.count("answered after respond_by"); n != 1 {
		t.Fatalf("late answer logged %d times, want once", n)
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
)

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startSandbox runs the sandbox on random ports until the test ends.
func startSandbox(t *testing.T, every time.Duration) (*sandbox, *io.PipeWriter, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdinR, stdinW := io.Pipe()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	readyc := make(chan *sandbox, 1)
	done := make(chan error, 1)
	opts := options{Listen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", SlackListen: "127.0.0.1:0", Every: every}
	go func() {
		done <- run(ctx, opts, stdinR, out, errOut, func(s *sandbox) { readyc <- s })
	}()
	var stopped bool
	var stopErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			_ = stdinW.Close()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("sandbox did not stop within 30 s of cancel")
			}
		}
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case s := <-readyc:
		return s, stdinW, out, stop
	case err := <-done:
		t.Fatalf("sandbox stopped before it was ready: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	case <-time.After(30 * time.Second):
		t.Fatalf("sandbox not ready within 30 s\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	return nil, nil, nil, nil
}

// sseEvents streams the bridge's /events into a channel.
func sseEvents(t *testing.T, ctx context.Context, apiURL string) <-chan bridge.Event {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	ch := make(chan bridge.Event, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev bridge.Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.MessageID != "" {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

func postJSON(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSandboxBothWays(t *testing.T) {
	s, stdin, out, stop := startSandbox(t, 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := sseEvents(t, ctx, s.apiURL)

	// Slack → agent: the first event, generated ones and a typed line all
	// reach /events, decrypted.
	if _, err := io.WriteString(stdin, "typed by the test\n"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for !(seen["<@U0SANDBOT> hello! is anyone listening?"] && seen["typed by the test"] && len(seen) >= 4) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event stream ended")
			}
			var p struct {
				TeamID string `json:"team_id"`
				Event  struct {
					Type, Text, Channel string
				} `json:"event"`
			}
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				t.Fatalf("payload %s: %v", ev.Payload, err)
			}
			if ev.Source != "slack" || ev.Type != "event_callback" || p.TeamID != sandboxTeamID {
				t.Fatalf("unexpected event %+v", ev)
			}
			if p.Event.Type != "app_mention" && p.Event.Type != "message" {
				t.Fatalf("unexpected Slack event type %q", p.Event.Type)
			}
			seen[p.Event.Text] = true
		case <-deadline:
			t.Fatalf("events seen so far: %v\noutput:\n%s", seen, out)
		}
	}

	// Agent → Slack: /send and /react reach the fake Slack with the bot token.
	code, body := postJSON(t, s.apiURL+"/send", `{"channel":"C123","text":"hi from the test"}`)
	if code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("/send: %d %s", code, body)
	}
	first := s.fake.Messages()[0]
	code, body = postJSON(t, s.apiURL+"/react", `{"channel":"`+first.Channel+`","timestamp":"`+first.TS+`","emoji":"eyes"}`)
	if code != http.StatusOK {
		t.Fatalf("/react: %d %s", code, body)
	}
	// The Web API line: a form body, Slack's answer.
	resp, err := http.PostForm(s.apiURL+"/api/chat.postMessage", url.Values{"channel": {"C123"}, "text": {"hi through the web api"}})
	if err != nil {
		t.Fatal(err)
	}
	wb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(wb), `"ok":true`) {
		t.Fatalf("/api/chat.postMessage: %d %s", resp.StatusCode, wb)
	}
	var posted, reacted, viaWebAPI bool
	for _, c := range s.fake.Calls() {
		if c.Token == s.userToken || c.Error != "" {
			continue
		}
		switch c.Method {
		case "chat.postMessage":
			posted = posted || (c.Params.Get("channel") == "C123" && c.Params.Get("text") == "hi from the test")
			viaWebAPI = viaWebAPI || (c.Params.Get("channel") == "C123" && c.Params.Get("text") == "hi through the web api")
		case "reactions.add":
			reacted = reacted || (c.Params.Get("timestamp") == first.TS && c.Params.Get("name") == "eyes")
		}
	}
	if !posted || !reacted || !viaWebAPI {
		t.Fatalf("fake Slack calls: posted=%v reacted=%v web api=%v: %+v", posted, reacted, viaWebAPI, s.fake.Calls())
	}
	waitFor(t, "the display of the outbound calls", 10*time.Second, func() bool {
		o := out.String()
		return strings.Contains(o, `slack ◂ chat.postMessage channel="C123" text="hi from the test" → ok`) &&
			strings.Contains(o, "local API POST /react → 200")
	})

	cancel()
	if err := stop(); err != nil {
		t.Fatalf("sandbox stopped with %v", err)
	}
	o := out.String()
	for _, want := range []string{
		"curl -N 127.0.0.1:", "/send -H 'Content-Type: application/json'", "/react -H", "/api/chat.postMessage -d channel=",
		"received by broker +", "sealed and queued +", "pulled +", "verified and opened +", "delivered on /events +",
		"stopped cleanly.",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(o, " ?") {
		t.Errorf("an event's way has an unobserved step:\n%s", o)
	}
}

func TestSandboxPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, tc := range []struct {
		name string
		opts options
		flag string
	}{
		{"local API", options{Listen: addr, BrokerListen: "127.0.0.1:0", SlackListen: "127.0.0.1:0"}, "--listen"},
		{"broker", options{Listen: "127.0.0.1:0", BrokerListen: addr, SlackListen: "127.0.0.1:0"}, "--broker-listen"},
		{"slack", options{Listen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", SlackListen: addr}, "--slack-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut syncBuffer
			err := run(context.Background(), tc.opts, nil, &out, &errOut, nil)
			want := addr + " is in use — pass " + tc.flag + " " + nextPort(addr)
			if err == nil || err.Error() != want {
				t.Fatalf("run = %v, want %q", err, want)
			}
		})
	}
}

func TestNextPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:7890", "127.0.0.1:7891"},
		{"[::1]:80", "[::1]:81"},
		{"127.0.0.1:65535", "127.0.0.1:0"},
		{"nonsense", "nonsense"},
	} {
		if got := nextPort(tc.in); got != tc.want {
			t.Errorf("nextPort(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
		want    options
	}{
		{args: nil, want: options{Listen: "127.0.0.1:7890", BrokerListen: "127.0.0.1:0", SlackListen: "127.0.0.1:0", Every: 5 * time.Second}},
		{args: []string{"--listen", "127.0.0.1:7891", "--every", "0"}, want: options{Listen: "127.0.0.1:7891", BrokerListen: "127.0.0.1:0", SlackListen: "127.0.0.1:0"}},
		{args: []string{"--every", "-1s"}, wantErr: "--every must not be negative"},
		{args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	} {
		got, err := parseFlags(tc.args, io.Discard)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseFlags(%q) error = %v, want %q", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("parseFlags(%q): %v", tc.args, err)
		case got != tc.want:
			t.Errorf("parseFlags(%q) = %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

func TestSandboxCtrlCDuringStartup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut syncBuffer
	opts := options{Listen: "127.0.0.1:0", BrokerListen: "127.0.0.1:0", SlackListen: "127.0.0.1:0", Every: time.Second}
	if err := run(ctx, opts, nil, &out, &errOut, func(*sandbox) { t.Error("ready after cancel") }); err != nil {
		t.Fatalf("run after Ctrl-C = %v, want a clean stop\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "stopped cleanly.") {
		t.Errorf("output lacks the clean stop:\n%s", out.String())
	}
}

package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		err  error
		want time.Duration
	}{
		{&BrokerError{Status: 429, RetryAfter: "7"}, 7 * time.Second},
		{&BrokerError{Status: 429, RetryAfter: " 2 "}, 2 * time.Second},
		{&BrokerError{Status: 429, RetryAfter: "Wed, 21 Oct 2015 07:28:00 GMT"}, 0},
		{&BrokerError{Status: 429, RetryAfter: "-1"}, 0},
		{&BrokerError{Status: 500}, 0},
		{errors.New("x"), 0},
	}
	for _, tc := range cases {
		if got := retryAfter(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestJitterBounds(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 3 * time.Second, 30 * time.Second} {
		for i := 0; i < 1000; i++ {
			j := jitter(d)
			if j < d*4/5 || j > d*6/5 {
				t.Fatalf("jitter(%v) = %v outside ±20%%", d, j)
			}
		}
	}
	if jitter(0) != 0 {
		t.Fatal("jitter(0)")
	}
}

func TestRetryableStatus(t *testing.T) {
	cases := []struct {
		status int
		msg    string
		want   bool
	}{
		{500, "internal error", true},
		{503, "queue unavailable", true},
		{502, "channel_not_found", false}, // a relayed Slack error is an answer
		{502, "Bad Gateway (answer is not sealrelay JSON; is this the broker URL?)", true},
		{429, "rate_limited", false},
		{401, "invalid or expired access token", false},
	}
	for _, tc := range cases {
		if got := retryableStatus(tc.status, tc.msg); got != tc.want {
			t.Errorf("%d %q: %v", tc.status, tc.msg, got)
		}
	}
}

func TestThreadIDFor(t *testing.T) {
	cases := []struct {
		typ, payload, want string
	}{
		{"event_callback", `{"event":{"channel":"C1","ts":"1.2"}}`, "C1:1.2"},
		{"event_callback", `{"event":{"channel":"C1","ts":"1.3","thread_ts":"1.2"}}`, "C1:1.2"},
		{"event_callback", `{"event":{"type":"reaction_added","item":{"channel":"G5","ts":"9.9"}}}`, "G5:9.9"},
		{"event_callback", `{"event":{"channel":"general","ts":"1.2"}}`, ""},
		{"block_actions", `{"channel":{"id":"D1"},"container":{"message_ts":"5.5"},"message":{"ts":"5.5","thread_ts":"4.4"}}`, "D1:4.4"},
		{"view_submission", `{"view":{"id":"V1"}}`, ""},
		{"slash_command", `{"channel_id":"C7","command":"/x"}`, "C7"},
		{"event_callback", `not json`, ""},
	}
	for _, tc := range cases {
		if got := ThreadIDFor(tc.typ, []byte(tc.payload)); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.typ, tc.payload, got, tc.want)
		}
	}
}

func TestDedupStoreExpiryAndCompaction(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	s, err := openDedupStore(dir, 20*time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "with \"quote\"\nand newline"} {
		if err := s.Mark(id); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Seen("with \"quote\"\nand newline") || s.Seen("zzz") {
		t.Fatal("seen")
	}
	s.Close()
	now = now.Add(19 * time.Minute)
	s, err = openDedupStore(dir, 20*time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Seen("a") || s.Len() != 3 {
		t.Fatalf("after reopen: len %d", s.Len())
	}
	if err := s.Mark("c"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	now = now.Add(2 * time.Minute) // a, b, quote are 21 min old; c is 2 min old
	s, err = openDedupStore(dir, 20*time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Seen("a") || !s.Seen("c") || s.Len() != 1 {
		t.Fatalf("expiry: a=%v c=%v len=%d", s.Seen("a"), s.Seen("c"), s.Len())
	}
	// Many marks trigger compaction; the store stays correct.
	for i := 0; i < 3000; i++ {
		now = now.Add(time.Second)
		if err := s.Mark(string(rune('A'+i%26)) + time.Duration(i).String()); err != nil {
			t.Fatal(err)
		}
	}
	if s.lines > 2*s.Len()+1024+1 {
		t.Fatalf("not compacted: %d lines for %d ids", s.lines, s.Len())
	}
}

func TestStreamHubBounds(t *testing.T) {
	h := newStreamHub(3, 1000, time.Unix(1, 0))
	id := 0
	ev := func(n int) *Event {
		id++
		return &Event{MessageID: fmt.Sprint("m", id), Payload: []byte(`"` + strings.Repeat("x", n) + `"`)}
	}
	for i := 0; i < 5; i++ {
		if _, err := h.publish(ev(10)); err != nil {
			t.Fatal(err)
		}
	}
	if n, d := h.stats().buffered, h.floor-h.first+1; n != 3 || d != 2 {
		t.Fatalf("count bound: held %d dropped %d", n, d)
	}
	// One large event pushes out older ones by size.
	if _, err := h.publish(ev(900)); err != nil {
		t.Fatal(err)
	}
	if n, d := h.stats().buffered, h.floor-h.first+1; n != 1 || d != 5 {
		t.Fatalf("byte bound: held %d dropped %d", n, d)
	}
	// An event larger than the bound is still kept alone (never lost silently).
	if _, err := h.publish(ev(5000)); err != nil {
		t.Fatal(err)
	}
	if n := h.stats().buffered; n != 1 {
		t.Fatalf("oversized event: held %d", n)
	}
	items, missed, _ := h.since(nil, 0)
	if len(items) != 1 || missed != 0 {
		t.Fatalf("since(0): %d items, %d missed", len(items), missed)
	}
	items, missed, _ = h.since(nil, items[0].seq-3)
	if len(items) != 1 || missed != 2 {
		t.Fatalf("resume gap: %d items, %d missed", len(items), missed)
	}
	// A message already buffered (redelivered by the broker) is not
	// streamed twice.
	id--
	if _, err := h.publish(ev(10)); err != nil {
		t.Fatal(err)
	}
	if n := h.stats().buffered; n != 1 || h.nextSeq != items[0].seq+1 {
		t.Fatalf("redelivered message streamed again: held %d", n)
	}
}

func TestIdentityPrintsNoSecrets(t *testing.T) {
	box, _ := crypto.GenerateBoxKeyPair()
	sign, _ := crypto.GenerateSigningKey()
	cfg := Config{Identity: Identity{OrgID: "T1", BoxKey: box, SigningKey: sign, AccessToken: "tok-SECRET"}}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cfg", cfg, "id", cfg.Identity)
	for _, out := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg.Identity), fmt.Sprintf("%v", &cfg), buf.String()} {
		for _, secret := range []string{"tok-SECRET", box.PrivateString(), sign.SeedString()} {
			if strings.Contains(out, secret) {
				t.Fatalf("secret printed: %s", out)
			}
		}
	}
}

// inspectPayload reads thread, event id and app id in one parse, and the
// app id even when another field has an unexpected shape.
func TestInspectPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, typ, payload string
		want               payloadInfo
	}{
		{"event", protocol.TypeEventCallback, `{"api_app_id":"A1","event_id":"Ev1","event":{"channel":"C1","ts":"1.2"}}`,
			payloadInfo{threadID: "C1:1.2", eventID: "Ev1", appID: "A1"}},
		{"event id only for callbacks", "block_actions", `{"api_app_id":"A1","event_id":"Ev1","channel":{"id":"C1"}}`,
			payloadInfo{threadID: "C1", appID: "A1"}},
		{"odd shape keeps app id", protocol.TypeEventCallback, `{"api_app_id":"A2","event":"x"}`, payloadInfo{appID: "A2"}},
		{"not json", protocol.TypeEventCallback, `{"api_app_id":"A2"`, payloadInfo{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := inspectPayload(tc.typ, []byte(tc.payload)); got != tc.want {
				t.Fatalf("got %+v want %+v", got, tc.want)
			}
		})
	}
}

// A pull answer is decoded in one pass when it says ok; every other answer
// keeps the status handling of the general path.
func TestPullAnswerDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string // "" = success
		wantN   int
	}{
		{"ok", 200, `{"ok":true,"messages":[{"message_id":"m-1"},{"message_id":"m-2"}]}`, "", 2},
		{"ok false", 200, `{"ok":false,"error":"inbox gone"}`, "inbox gone", 0},
		{"no ok", 200, `{"messages":[]}`, "HTTP 502", 0},
		{"not json", 200, `<html>`, "not sealrelay JSON", 0},
		{"wrong shape", 200, `{"ok":true,"messages":"x"}`, "decode broker answer", 0},
		{"error status with ok", 503, `{"ok":true,"messages":[]}`, "Service Unavailable", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := newClient([]string{srv.URL}, srv.Client())
			var a pullAnswer
			err := c.do(context.Background(), http.MethodPost, "/api/inbox/pull", "tok", []byte(`{}`), 5*time.Second, &a)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			case tc.wantErr == "" && len(a.Messages) != tc.wantN:
				t.Fatalf("%d messages, want %d", len(a.Messages), tc.wantN)
			}
		})
	}
}

// openBatch opens a batch on several goroutines; each result lands at its
// message's index, poison included, and messages failing the id checks
// are not opened.
func TestOpenBatchKeepsPositions(t *testing.T) {
	t.Parallel()
	brokerSign, _ := crypto.GenerateSigningKey()
	brokerBox, _ := crypto.GenerateBoxKeyPair()
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSign, _ := crypto.GenerateSigningKey()
	b, err := New(Config{
		Identity: Identity{BrokerURLs: []string{"http://127.0.0.1:1"}, OrgID: "T0123ABCD", BoxKey: agentBox, SigningKey: agentSign,
			BrokerBoxKey: brokerBox.Public, BrokerSigningKey: brokerSign.Public(), AccessToken: "x"},
		StateDir: t.TempDir(), Stream: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ts := time.Now().Unix()
	const n = 40
	msgs := make([]protocol.InboxMessage, n)
	for i := range msgs {
		pt := fmt.Appendf(nil, `{"source":"slack","type":"event_callback","broker_timestamp":%d,"payload":{"n":%d}}`, ts, i)
		if msgs[i], err = protocol.SealEnvelope(pt, "T0123ABCD", fmt.Sprintf("m-%d", i), ts, agentBox.Public, brokerSign); err != nil {
			t.Fatal(err)
		}
		switch i % 4 {
		case 1:
			msgs[i].BrokerSignature = msgs[0].BrokerSignature // not this message's
		case 2:
			msgs[i].OrgID = "TOTHER" // not opened
		}
	}
	out := b.openBatch(msgs)
	for i, o := range out {
		switch i % 4 {
		case 1:
			if !errors.Is(o.err, protocol.ErrEnvelopeSignature) {
				t.Errorf("%d: err %v, want a signature error", i, o.err)
			}
		case 2:
			if o.env != nil || o.err != nil || o.pt != nil {
				t.Errorf("%d: opened a message of another org", i)
			}
		default:
			if o.err != nil || string(o.env.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("%d: err %v payload %s", i, o.err, o.env.Payload)
			}
		}
	}
}

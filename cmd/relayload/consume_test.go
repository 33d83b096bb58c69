package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestReadSSE parses ids, event names, multi-line data and comments, and
// stops at an oversized line.
func TestReadSSE(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     []sseFrame
		wantErr  bool
	}{
		{name: "one", in: "id: 1\ndata: {\"a\":1}\n\n", want: []sseFrame{{ID: "1", Data: []byte(`{"a":1}`)}}},
		{name: "comment and two", in: ": ping\n\nid:2\ndata:x\n\nevent: dropped\ndata: {\"dropped\":3}\n\n",
			want: []sseFrame{{ID: "2", Data: []byte("x")}, {Event: "dropped", Data: []byte(`{"dropped":3}`)}}},
		{name: "multi-line data", in: "data: a\ndata: b\n\n", want: []sseFrame{{Data: []byte("a\nb")}}},
		{name: "unterminated", in: "id: 9\ndata: x\n", want: nil},
		{name: "no data", in: "id: 3\n\n", want: nil},
		{name: "oversized", in: "data: " + strings.Repeat("x", maxDeliveryBody+1) + "\n\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []sseFrame
			err := readSSE(strings.NewReader(tc.in), func(f sseFrame) error {
				f.Data = bytes.Clone(f.Data)
				got = append(got, f)
				return nil
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("readSSE: %v, wantErr %v", err, tc.wantErr)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Fatalf("frames %q, want %q", got, tc.want)
			}
		})
	}
	stop := errors.New("stop")
	if err := readSSE(strings.NewReader("data: a\n\ndata: b\n\n"), func(sseFrame) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("readSSE returned %v, want the callback's error", err)
	}
}

// TestForwardReceiver accepts a forwarded event only with a valid Slack
// signature (slack-go's verifier), names the consumer by path, and refuses
// bad input with a 4xx that says what is wrong.
func TestForwardReceiver(t *testing.T) {
	t.Parallel()
	const secret = "forward-secret"
	body := eventBody("T1", "RUN", 1, 0, 1, time.Now())
	tests := []struct {
		name, method, path, secret, ctype string
		body                              []byte
		code                              int
		consumer                          int // -1: nothing recorded
	}{
		{name: "ok", method: "POST", path: "/slack/events", secret: secret, ctype: "application/json", body: body, code: 200, consumer: 0},
		{name: "second consumer", method: "POST", path: "/c/1/slack/events", secret: secret, ctype: "application/json", body: body, code: 200, consumer: 1},
		{name: "bad signature", method: "POST", path: "/slack/events", secret: "wrong", ctype: "application/json", body: body, code: 401, consumer: -1},
		{name: "unknown consumer", method: "POST", path: "/c/7/slack/events", secret: secret, ctype: "application/json", body: body, code: 404, consumer: -1},
		{name: "get", method: "GET", path: "/slack/events", secret: secret, code: 405, consumer: -1},
		{name: "form", method: "POST", path: "/slack/events", secret: secret, ctype: "application/x-www-form-urlencoded", body: []byte("payload=%7B%7D"), code: 200, consumer: -1},
		{name: "too large", method: "POST", path: "/slack/events", secret: secret, ctype: "application/json", body: bytes.Repeat([]byte("x"), maxDeliveryBody+1), code: 413, consumer: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker(2)
			tr.sent(eventID("RUN", 1), 0, 1, time.Now())
			fr := &forwardReceiver{secret: secret, consumers: 2, tr: tr, errs: &errorLog{}}
			req := httptest.NewRequest(tc.method, tc.path, bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			slackfake.SignRequest(req, tc.secret, time.Now(), tc.body)
			w := httptest.NewRecorder()
			fr.ServeHTTP(w, req)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.code, w.Body)
			}
			if tc.code >= 400 && !strings.Contains(w.Body.String(), `"error":`) {
				t.Fatalf("a %d without an error text: %s", w.Code, w.Body)
			}
			c := tr.counts()
			for i, pc := range c.PerConsumer {
				if want := map[bool]int{true: 1, false: 0}[i == tc.consumer]; pc.Delivered != want {
					t.Fatalf("consumer %d delivered %d, want %d", i, pc.Delivered, want)
				}
			}
		})
	}
}

// TestSSEConsumerReconnects: the consumer reports each event once,
// reconnects with Last-Event-ID when the stream ends, and counts a
// "dropped" notice.
func TestSSEConsumerReconnects(t *testing.T) {
	t.Parallel()
	tr := newTracker(1)
	for i := 1; i <= 3; i++ {
		tr.sent(eventID("RUN", i), 0, i, time.Now())
		tr.answered(eventID("RUN", i), true, 0)
	}
	var mu sync.Mutex
	var lastIDs []string
	frame := func(seq, n int) string {
		return fmt.Sprintf("id: %d\ndata: {\"message_id\":\"m-%d\",\"payload\":{\"type\":\"event_callback\",\"event_id\":%q}}\n\n", seq, n, eventID("RUN", n))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		conn := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch conn {
		case 1:
			fmt.Fprint(w, frame(1, 1)+frame(2, 2)) // then the stream ends
		case 2:
			fmt.Fprint(w, "event: dropped\ndata: {\"dropped\":2}\n\n"+frame(3, 3))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := &sseConsumer{idx: 0, url: srv.URL, tr: tr, client: srv.Client(), connected: make(chan struct{}), errs: &errorLog{}}
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	tr.donePosting()
	<-tr.settled
	cancel()
	<-done
	got := tr.counts()
	if got.Delivered != 3 || got.Duplicated != 0 || got.Lost != 0 || got.Dropped != 2 {
		t.Fatalf("counts %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lastIDs) < 2 || lastIDs[0] != "" || lastIDs[1] != "2" {
		t.Fatalf("Last-Event-ID per connection %q, want \"\" then \"2\"", lastIDs)
	}
}

// TestConsumerFromPath maps forward paths to consumers.
func TestConsumerFromPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		n    int
		ok   bool
	}{{"/slack/events", 0, true}, {"/", 0, true}, {"/c/0/slack/events", 0, true}, {"/c/2/x", 2, true},
		{"/c/3/x", 0, false}, {"/c/-1/x", 0, false}, {"/c/x/y", 0, false}}
	for _, tc := range tests {
		if n, ok := consumerFromPath(tc.path, 3); n != tc.n || ok != tc.ok {
			t.Errorf("consumerFromPath(%q) = %d, %v; want %d, %v", tc.path, n, ok, tc.n, tc.ok)
		}
	}
	if droppedCount([]byte(`{"dropped":5}`)) != 5 || droppedCount([]byte("junk")) != 1 {
		t.Error("droppedCount")
	}
}

package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

// streamOnly starts a bridge whose only sink is the SSE stream, in dir.
func streamOnly(t *testing.T, fb *bridgetest.FakeBroker, id bridge.Identity, dir string, buffer int) (*running, string) {
	t.Helper()
	cfg := baseConfig(t, id, dir)
	cfg.Stream = true
	cfg.StreamBuffer = buffer
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	return r, serveAPI(t, ln, r.b)
}

func messageIDOf(t testing.TB, data string) string {
	t.Helper()
	var ev bridge.Event
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		t.Fatalf("SSE data %q: %v", data, err)
	}
	return ev.MessageID
}

// With the stream as the only sink, a full buffer of events no consumer
// has read is never evicted: the bridge stops taking (and acking) more
// until a consumer reads, and the consumer then gets every event.
func TestSSEStreamOnlyNeverDropsUnread(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	r, base := streamOnly(t, fb, newIdentity(t, fb), t.TempDir(), 2)
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, fb.Enqueue(slackEvent("x", "C1", fmt.Sprintf("3.%d", i))))
	}
	// Two fit; the rest stay unacked at the broker.
	waitFor(t, fb, "two acks and a full buffer", func() bool {
		return len(fb.Acked()) == 2 && r.b.Health().StreamUnread == 2
	})
	s := openStream(t, base, "")
	var last uint64
	for i, want := range ids {
		ev := s.next(t)
		if ev.event != "" {
			t.Fatalf("event %d: unexpected %q notice %s", i, ev.event, ev.data)
		}
		if got := messageIDOf(t, ev.data); got != want {
			t.Fatalf("event %d is %s, want %s", i, got, want)
		}
		seq, _ := strconv.ParseUint(ev.id, 10, 64)
		if seq <= last {
			t.Fatalf("id %d after %d", seq, last)
		}
		last = seq
	}
	waitFor(t, fb, "all acked", func() bool { return fb.Pending() == 0 })
	if h := r.b.Health(); h.StreamDropped != 0 {
		t.Fatalf("stream_dropped %d, want 0", h.StreamDropped)
	}
}

// With another sink (here an in-process one) the stream buffer evicts the
// oldest events; stream_dropped counts only what a resuming consumer
// actually missed, not evictions.
func TestSSEWithOtherSinkCountsOnlyMissed(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
	cfg.Stream = true
	cfg.StreamBuffer = 2
	col := newCollector()
	cfg.Deliver = col.deliver
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	base := serveAPI(t, ln, r.b)

	first := openStream(t, base, "")
	m1 := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	e1 := first.next(t)
	if messageIDOf(t, e1.data) != m1 {
		t.Fatal(e1.data)
	}
	first.close()
	var later []string
	for i := 0; i < 4; i++ {
		later = append(later, fb.Enqueue(slackEvent("x", "C1", fmt.Sprintf("2.%d", i))))
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if h := r.b.Health(); h.StreamDropped != 0 {
		t.Fatalf("evictions counted as drops before any consumer missed them: %d", h.StreamDropped)
	}
	s := openStream(t, base, e1.id)
	d := s.next(t)
	if d.event != "dropped" || d.data != `{"dropped":2}` {
		t.Fatalf("want a dropped notice for 2 events, got %+v", d)
	}
	for _, want := range later[2:] {
		if got := messageIDOf(t, s.next(t).data); got != want {
			t.Fatalf("got %s want %s", got, want)
		}
	}
	// The miss is counted just after the write that reported it.
	waitFor(t, fb, "the miss to be counted", func() bool { return r.b.Health().StreamDropped >= 2 })
	if h := r.b.Health(); h.StreamDropped != 2 || h.StreamBuffered != 2 {
		t.Fatalf("health dropped=%d buffered=%d, want 2 and 2", h.StreamDropped, h.StreamBuffered)
	}
	// A consumer that read everything misses nothing.
	s2 := openStream(t, base, "")
	for _, want := range later[2:] {
		if got := messageIDOf(t, s2.next(t).data); got != want {
			t.Fatalf("fresh consumer got %s want %s", got, want)
		}
	}
	if h := r.b.Health(); h.StreamDropped != 2 {
		t.Fatalf("stream_dropped %d after a complete read, want 2", h.StreamDropped)
	}
}

// Events acked while no consumer was connected survive a bridge restart in
// the encrypted spool: the next process serves them, with ids that keep
// increasing, and a consumer resuming with an id from the first process
// gets exactly the rest. The spool holds no plaintext.
func TestSSESpoolSurvivesRestart(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	dir := t.TempDir()
	r, base := streamOnly(t, fb, id, dir, 100)
	const secret = "spool-plaintext-marker"
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, fb.Enqueue(slackEvent(secret, "C1", fmt.Sprintf("4.%d", i))))
	}
	s := openStream(t, base, "")
	e0 := s.next(t)
	s.close()
	for i := 3; i < 6; i++ {
		ids = append(ids, fb.Enqueue(slackEvent(secret, "C1", fmt.Sprintf("4.%d", i))))
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "stream.spool"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(ids[0])) {
		t.Fatal("the stream spool holds plaintext")
	}

	r2, base2 := streamOnly(t, fb, id, dir, 100)
	s2 := openStream(t, base2, e0.id)
	last, _ := strconv.ParseUint(e0.id, 10, 64)
	for i, want := range ids[1:] {
		ev := s2.next(t)
		if got := messageIDOf(t, ev.data); got != want {
			t.Fatalf("after restart event %d is %s, want %s", i+1, got, want)
		}
		seq, _ := strconv.ParseUint(ev.id, 10, 64)
		if seq <= last {
			t.Fatalf("id %d not above %d across the restart", seq, last)
		}
		last = seq
	}
	// New events after the restart continue the ids.
	m := fb.Enqueue(slackEvent("new", "C1", "4.9"))
	ev := s2.next(t)
	if seq, _ := strconv.ParseUint(ev.id, 10, 64); messageIDOf(t, ev.data) != m || seq != last+1 {
		t.Fatalf("new event %s id %s, want %s id %d", ev.data, ev.id, m, last+1)
	}
	// The stream can hand the event over before the counter moves.
	waitFor(t, fb, "the new event to be counted", func() bool { return r2.b.Health().Delivered >= 1 })
	if h := r2.b.Health(); h.Delivered != 1 || h.StreamDropped != 0 {
		t.Fatalf("second process delivered %d (want 1: the rest came from the spool), dropped %d", h.Delivered, h.StreamDropped)
	}
}

// The same Slack event queued twice under two message ids is delivered
// once, also across a restart (the event id is in the dedup log).
func TestDuplicateSlackEventIDDeliveredOnce(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	dir := t.TempDir()
	col := newCollector()
	cfg := baseConfig(t, id, dir)
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	a := fb.Enqueue(slackEvent("same", "C1", "5.1"))
	b := fb.Enqueue(slackEvent("same", "C1", "5.1"))
	sentinel := fb.Enqueue(slackEvent("other", "C1", "5.2"))
	if got := col.next(t).MessageID; got != a {
		t.Fatalf("first delivery %s, want %s", got, a)
	}
	if got := col.next(t).MessageID; got != sentinel {
		t.Fatalf("second delivery %s, want the sentinel %s (duplicate %s not suppressed)", got, sentinel, b)
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if h := r.b.Health(); h.Duplicates != 1 || h.Delivered != 2 {
		t.Fatalf("duplicates %d delivered %d", h.Duplicates, h.Delivered)
	}
	r.stop(t)

	cfg2 := baseConfig(t, id, dir)
	col2 := newCollector()
	cfg2.Deliver = col2.deliver
	start(t, cfg2)
	fb.Enqueue(slackEvent("same", "C1", "5.1"))
	last := fb.Enqueue(slackEvent("third", "C1", "5.3"))
	if got := col2.next(t).MessageID; got != last {
		t.Fatalf("after restart got %s first, want %s", got, last)
	}
}

// An events_dropped notice is logged, totalled on /health and in the
// metrics, and acked.
func TestEventsDroppedNotice(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	col := newCollector()
	cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	notice := func(n protocol.DropNotice) protocol.Envelope {
		p, _ := json.Marshal(n)
		return protocol.Envelope{Source: protocol.SourceSystem, Type: protocol.TypeEventsDropped, BrokerTimestamp: 1, Payload: p}
	}
	fb.Enqueue(notice(protocol.DropNotice{Count: 3, Reasons: map[protocol.DropReason]int{"inbox_full": 2, "too_large": 1},
		FirstDroppedAt: 100, LastDroppedAt: 200, EventIDs: []string{"Ev1", "Ev2", "Ev3"}}))
	fb.Enqueue(notice(protocol.DropNotice{Count: 2, Reasons: map[protocol.DropReason]int{"inbox_full": 1, "weird": 1}}))
	// Payloads protocol.ParseDropNotice refuses: logged, acked, not counted.
	for i, bad := range []string{`{"count":"many"}`, `{"count":4,"reasons":{"inbox_full":-4}}`,
		`{"count":4,"reasons":{"Inbox Full":4}}`, `{"count":-4}`} {
		fb.EnqueueRaw(fb.Seal(protocol.Envelope{Source: protocol.SourceSystem, Type: protocol.TypeEventsDropped, BrokerTimestamp: 1,
			Payload: json.RawMessage(bad)}, fmt.Sprintf("m-bad-notice-%d", i)))
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	h := r.b.Health()
	want := map[string]uint64{"inbox_full": 3, "too_large": 1, "other": 1}
	if h.BrokerDropped != 5 || len(h.BrokerDropReasons) != 3 {
		t.Fatalf("broker_dropped %d reasons %v, want 5 %v", h.BrokerDropped, h.BrokerDropReasons, want)
	}
	for k, v := range want {
		if h.BrokerDropReasons[k] != v {
			t.Fatalf("reasons %v, want %v", h.BrokerDropReasons, want)
		}
	}
	body := scrape(t, r.b)
	if !strings.Contains(body, `sealrelay_bridge_broker_dropped_events_total{reason="inbox_full"} 3`) {
		t.Fatalf("metric missing:\n%s", body)
	}
}

func scrape(t testing.TB, b *bridge.Bridge) string {
	t.Helper()
	rec := httptest.NewRecorder()
	b.MetricsHandler().ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

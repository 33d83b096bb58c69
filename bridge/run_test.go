package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/protocol"
)

func TestPollVerifyOpenDeliverAck(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)

	ids := []string{
		fb.Enqueue(slackEvent("one", "C111", "1771464999.000100")),
		fb.Enqueue(slackEvent("two", "C111", "1771464999.000200")),
		fb.Enqueue(protocol.Envelope{Source: "system", Type: "agent_notice", BrokerTimestamp: time.Now().Unix(), Payload: json.RawMessage(`{"note":"x"}`)}),
	}
	// In order per channel; the notice names no channel and has its own
	// delivery lane, so it may come at any point.
	var chanOrder []string
	seen := map[string]bool{}
	for range ids {
		ev := col.next(t)
		seen[ev.MessageID] = true
		if ev.ThreadID != "" {
			chanOrder = append(chanOrder, ev.MessageID)
		}
	}
	if !equalStrings(chanOrder, ids[:2]) || !seen[ids[2]] {
		t.Fatalf("channel order %v, seen %v; want %v in order and %s", chanOrder, seen, ids[:2], ids[2])
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if got := fb.Acked(); !equalStrings(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(ids))) {
		t.Fatalf("acked %v, want %v", got, ids)
	}
	r.stop(t) // the ack answer may still be in flight; Run returns after it
	h := r.b.Health()
	if h.Delivered != 3 || h.LastPollAt == nil || h.LastAckAt == nil {
		t.Fatalf("health %+v", h)
	}
}

func TestEventFields(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	start(t, cfg)
	env := slackEvent("hello <b>&", "C222", "1771464999.000300")
	mid := fb.Enqueue(env)
	ev := col.next(t)
	if ev.MessageID != mid || ev.Source != "slack" || ev.Type != "event_callback" || ev.BrokerTimestamp != env.BrokerTimestamp {
		t.Fatalf("event %+v", ev)
	}
	if ev.ThreadID != "C222:1771464999.000300" {
		t.Fatalf("thread id %q", ev.ThreadID)
	}
	var p struct {
		Event struct{ Text string } `json:"event"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil || p.Event.Text != "hello <b>&" {
		t.Fatalf("payload %s (%v)", ev.Payload, err)
	}
}

func TestPoisonMessagesAreAckedNotDelivered(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	good := slackEvent("fine", "C1", "1.1")

	badSig := fb.Seal(good, "p-sig")
	badSig.BrokerSignature = badSig.BrokerSignature[:10] + strings.Repeat("A", len(badSig.BrokerSignature)-12) + "=="

	other := bridgetest.New(t, testOrg) // different broker keys: seals to us but signs with another key
	other.SetAgent(id.BoxKey.Public, id.SigningKey.Public())
	foreignSig := other.Seal(good, "p-foreign")

	// Valid signature over a box that does not open (sealed to another key).
	stranger := bridgetest.New(t, testOrg)
	stranger.SigningKey = fb.SigningKey
	strangerID := newIdentity(t, stranger)
	_ = strangerID
	noOpen := stranger.Seal(good, "p-open")

	notJSON := protocol.Envelope{Source: "slack", Type: "event_callback", BrokerTimestamp: 5, Payload: json.RawMessage(`{}`)}
	m := fb.Seal(notJSON, "p-ts")
	m.BrokerTimestamp = 6 // inner timestamp differs from the signed one → re-sign so only the mismatch is wrong
	m.BrokerSignature = protocol.EncodeSignature(fb.SigningKey.Sign(protocol.EnvelopeSigningBytes(m.OrgID, m.BrokerTimestamp, m.Encrypted)))

	wrongOrg := fb.Seal(good, "p-org")
	wrongOrg.OrgID, wrongOrg.WorkspaceID = "T999", "T999"
	wrongOrg.BrokerSignature = protocol.EncodeSignature(fb.SigningKey.Sign(protocol.EnvelopeSigningBytes("T999", wrongOrg.BrokerTimestamp, wrongOrg.Encrypted)))

	notB64 := fb.Seal(good, "p-b64")
	notB64.Encrypted = "%%%not base64%%%"
	notB64.BrokerSignature = protocol.EncodeSignature(fb.SigningKey.Sign(protocol.EnvelopeSigningBytes(notB64.OrgID, notB64.BrokerTimestamp, notB64.Encrypted)))

	poison := []protocol.InboxMessage{badSig, foreignSig, noOpen, m, wrongOrg, notB64}
	var poisonIDs []string
	for _, p := range poison {
		poisonIDs = append(poisonIDs, fb.EnqueueRaw(p))
	}
	goodID := fb.Enqueue(good)

	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	ev := col.next(t)
	if ev.MessageID != goodID {
		t.Fatalf("delivered %s, want only the good message %s", ev.MessageID, goodID)
	}
	waitFor(t, fb, "all acked", func() bool { return fb.Pending() == 0 })
	col.none(t)
	acked := fb.Acked()
	if !equalStrings(acked, append(poisonIDs, goodID)) {
		t.Fatalf("acked %v", acked)
	}
	if h := r.b.Health(); h.Poison != uint64(len(poison)) || h.Delivered != 1 {
		t.Fatalf("health poison=%d delivered=%d", h.Poison, h.Delivered)
	}
}

func TestDedupAcrossRestart(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	dir := t.TempDir()
	mid := fb.Enqueue(slackEvent("once", "C1", "1.1"))

	// First run: deliver, then the bridge "dies" before its ack reaches the
	// broker (the ack connection is aborted and the run is stopped from
	// inside the delivery).
	fb.DropAcks(1)
	col := newCollector()
	cfg := baseConfig(t, id, dir)
	stopped := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Deliver = func(ctx2 context.Context, ev *bridge.Event) error {
		err := col.deliver(ctx2, ev)
		cancel()
		close(stopped)
		return err
	}
	r := startWith(t, cfg, ctx, cancel)
	if ev := col.next(t); ev.MessageID != mid {
		t.Fatalf("got %s", ev.MessageID)
	}
	<-stopped
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if fb.Pending() != 1 {
		t.Fatalf("message should still be unacked at the broker, pending=%d", fb.Pending())
	}
	// The stopped bridge's long poll must be gone, or it could lease the
	// redelivery meant for the next run.
	waitFor(t, fb, "the stopped bridge's pulls to end", func() bool { return fb.PullsInFlight() == 0 })
	fb.ExpireLeases() // the unacked message's lease lapses while the bridge is down

	// Second run with the same state dir: the broker redelivers, the bridge
	// must ack without delivering again.
	cfg2 := baseConfig(t, id, dir)
	cfg2.Deliver = col.deliver
	r2 := start(t, cfg2)
	next := fb.Enqueue(slackEvent("after", "C1", "1.2"))
	if ev := col.next(t); ev.MessageID != next {
		t.Fatalf("redelivered %s after restart (want only %s)", ev.MessageID, next)
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	r2.stop(t)
	if h := r2.b.Health(); h.Duplicates != 1 {
		t.Fatalf("duplicates = %d, want 1", h.Duplicates)
	}
	waitFor(t, fb, "the stopped bridge's pulls to end", func() bool { return fb.PullsInFlight() == 0 })

	// A third run in a fresh state dir would deliver it again: the store is
	// what prevents it (guards against a vacuous pass).
	fb.EnqueueRaw(fb.Seal(slackEvent("once", "C1", "1.1"), mid))
	col2 := newCollector()
	cfg3 := baseConfig(t, id, t.TempDir())
	cfg3.Deliver = col2.deliver
	start(t, cfg3)
	if ev := col2.next(t); ev.MessageID != mid {
		t.Fatalf("fresh state dir: got %s want %s", ev.MessageID, mid)
	}
}

func TestStateDirLocked(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	dir := t.TempDir()
	cfg := baseConfig(t, id, dir)
	cfg.Stream = true
	b, err := bridge.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := bridge.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second bridge on the same state dir: %v", err)
	}
}

func TestDeliveryFailureIsRetriedNotAcked(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	col.fail = 2
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	a := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	bID := fb.Enqueue(slackEvent("b", "C1", "1.2"))
	start(t, cfg)
	if ev := col.next(t); ev.MessageID != a {
		t.Fatalf("got %s", ev.MessageID)
	}
	if ev := col.next(t); ev.MessageID != bID {
		t.Fatalf("got %s", ev.MessageID)
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	// The failed attempts acked nothing: the first ack batch holds both.
	for _, batch := range fb.AckBatches() {
		if len(batch) == 0 {
			t.Fatal("empty ack batch")
		}
	}
	if got := fb.Acked(); !equalStrings(got, []string{a, bID}) {
		t.Fatalf("acked %v", got)
	}
	// The failed batch was retried locally, not re-pulled.
	if n := fb.HandedOut(a); n != 1 {
		t.Fatalf("message pulled %d times, want 1", n)
	}
}

func TestExpiredAccessToken(t *testing.T) {
	t.Run("broker answers 401", func(t *testing.T) {
		fb := bridgetest.New(t, testOrg)
		id := newIdentity(t, fb)
		fb.ExpireToken()
		cfg := baseConfig(t, id, t.TempDir())
		cfg.Stream = true
		r := start(t, cfg)
		select {
		case err := <-r.done:
			if !errors.Is(err, bridge.ErrReauthenticate) || !strings.Contains(err.Error(), "bridge register") {
				t.Fatalf("Run: %v", err)
			}
			r.done <- err
		case <-time.After(testTimeout):
			t.Fatal("Run kept going with a dead token")
		}
	})
	t.Run("expired locally", func(t *testing.T) {
		fb := bridgetest.New(t, testOrg)
		id := newIdentity(t, fb)
		id.AccessTokenExpiresAt = time.Now().Add(-time.Minute)
		cfg := baseConfig(t, id, t.TempDir())
		cfg.Stream = true
		b, err := bridge.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		err = b.Run(t.Context())
		if !errors.Is(err, bridge.ErrReauthenticate) || fb.Pulls() != 0 {
			t.Fatalf("Run: %v (pulls %d)", err, fb.Pulls())
		}
	})
	t.Run("unknown agent 403", func(t *testing.T) {
		fb := bridgetest.New(t, testOrg)
		id := newIdentity(t, fb)
		fb.FailPulls(bridgetest.Failure{Status: http.StatusForbidden, Message: protocol.ErrInvalidSignature})
		cfg := baseConfig(t, id, t.TempDir())
		cfg.Stream = true
		b, err := bridge.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if err := b.Run(t.Context()); !errors.Is(err, bridge.ErrReauthenticate) {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestBackoffOnErrorsThenRecovers(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	fb.FailPulls(
		bridgetest.Failure{Status: 503, Message: "queue unavailable"},
		bridgetest.Failure{Status: 400, Message: protocol.ErrTimestampWindow},
		bridgetest.Failure{Status: 500, Message: "boom"},
	)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	mid := fb.Enqueue(slackEvent("x", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != mid {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	r.stop(t)
	if h := r.b.Health(); h.ConsecutiveFailures != 0 || h.LastError == "" {
		t.Fatalf("health after recovery %+v", h)
	}
}

func TestLongPollReconnectAfterBrokerRestart(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.WaitSeconds = 20
	cfg.Deliver = col.deliver
	start(t, cfg)
	first := fb.Enqueue(slackEvent("1", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != first {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	// The bridge is now parked in a 20 s long poll; kill the broker under it.
	fb.Restart()
	second := fb.Enqueue(slackEvent("2", "C1", "1.2"))
	if ev := col.next(t); ev.MessageID != second {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
}

func TestFailoverBetweenBrokerURLs(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	dead := bridgetest.New(t, testOrg)
	deadURL := dead.URL()
	dead.Close()
	id.BrokerURLs = []string{deadURL, fb.URL()}
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	mid := fb.Enqueue(slackEvent("x", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != mid {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	r.stop(t)
	if h := r.b.Health(); h.BrokerURL != fb.URL() {
		t.Fatalf("health broker_url %s", h.BrokerURL)
	}
}

func TestGracefulShutdownAcksDelivered(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	a := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	fb.Enqueue(slackEvent("b", "C1", "1.2"))
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Deliver = func(ctx2 context.Context, ev *bridge.Event) error {
		cancel() // SIGTERM arrives during the first delivery
		return col.deliver(ctx2, ev)
	}
	r := startWith(t, cfg, ctx, cancel)
	if ev := col.next(t); ev.MessageID != a {
		t.Fatal(ev.MessageID)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	col.none(t)
	if got := fb.Acked(); !equalStrings(got, []string{a}) {
		t.Fatalf("acked %v, want only the delivered %s", got, a)
	}
}

func TestDeliveryRetryAfterLocalWindowPullsAgain(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	var offset atomic.Int64
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	failed := false
	cfg.Deliver = func(ctx context.Context, ev *bridge.Event) error {
		if !failed {
			failed = true
			offset.Add(int64(3 * time.Minute)) // longer than the local retry window
			fb.ExpireLeases()                  // and than the broker's lease
			return errors.New("app down")
		}
		return col.deliver(ctx, ev)
	}
	a := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	start(t, cfg)
	if ev := col.next(t); ev.MessageID != a {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	if n := fb.HandedOut(a); n != 2 {
		t.Fatalf("message pulled %d times, want 2 (re-pulled after the local retry window)", n)
	}
}

func TestRunRefusesChangedBrokerKeys(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	other := bridgetest.New(t, testOrg)
	id.BrokerSigningKey = other.SigningKey.Public() // saved keys no longer match the broker's
	fb.Enqueue(slackEvent("x", "C1", "1.1"))
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Stream = true
	b, err := newBridge(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(t.Context())
	if !errors.Is(err, bridge.ErrBrokerKeysChanged) || !strings.Contains(err.Error(), "bridge register") {
		t.Fatalf("Run: %v", err)
	}
	if fb.Pulls() != 0 || fb.Pending() != 1 {
		t.Fatalf("polled (%d) or acked with mismatched keys", fb.Pulls())
	}
}

func TestBrokerKeyRotationMidRunStopsWithoutAcking(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	first := fb.Enqueue(slackEvent("a", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != first {
		t.Fatal(ev.MessageID)
	}
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 })
	fb.RotateSigningKey()
	fb.Enqueue(slackEvent("b", "C1", "1.2")) // signed with the new key
	select {
	case err := <-r.done:
		if !errors.Is(err, bridge.ErrBrokerKeysChanged) {
			t.Fatalf("Run: %v", err)
		}
		r.done <- err
	case <-time.After(testTimeout):
		t.Fatal("Run kept going after the broker's keys changed")
	}
	if fb.Pending() != 1 || r.b.Health().Poison != 0 {
		t.Fatalf("message after rotation was dropped: pending %d poison %d", fb.Pending(), r.b.Health().Poison)
	}
}

// A pull that comes back full means a backlog: the next pulls ask for
// BacklogMaxMessages until one comes back short, then the base size again.
// Every message is delivered once, in order, and acked.
func TestBacklogPullsGrow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		max, backlg int
		queued      int
		want        []int // the first pull sizes asked for
	}{
		{"escalates", 10, 0, 150, []int{10, 100, 100, 10}},
		{"custom", 5, 20, 30, []int{5, 20, 20, 5}},
		{"off", 10, 10, 30, []int{10, 10, 10, 10}},
		{"no backlog", 10, 0, 3, []int{10, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := bridgetest.New(t, testOrg)
			id := newIdentity(t, fb)
			var want []string
			for i := 0; i < tc.queued; i++ {
				want = append(want, fb.Enqueue(slackEvent("e", "C1", fmt.Sprintf("1.%d", i))))
			}
			col := newCollector()
			cfg := baseConfig(t, id, t.TempDir())
			cfg.MaxMessages, cfg.BacklogMaxMessages = tc.max, tc.backlg
			cfg.Deliver = col.deliver
			start(t, cfg)
			for _, w := range want {
				if ev := col.next(t); ev.MessageID != w {
					t.Fatalf("got %s want %s", ev.MessageID, w)
				}
			}
			waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 && len(fb.PullSizes()) >= len(tc.want) })
			if got := fb.PullSizes()[:len(tc.want)]; !slices.Equal(got, tc.want) {
				t.Fatalf("pull sizes %v, want %v first", got, tc.want)
			}
			col.none(t)
			if n := len(fb.Acked()); n != tc.queued {
				t.Fatalf("acked %d, want %d", n, tc.queued)
			}
		})
	}
}

func TestBacklogMaxMessagesValidated(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	for _, n := range []int{5, 101} {
		cfg := baseConfig(t, newIdentity(t, fb), t.TempDir())
		cfg.MaxMessages, cfg.BacklogMaxMessages = 10, n
		if _, err := bridge.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "backlog max messages") {
			t.Fatalf("backlog %d: err %v", n, err)
		}
	}
}

// The ack of a batch does not hold up the next pull: with the first ack
// unanswered, the bridge already pulls and delivers the next event. It
// keeps one ack in flight, so the acks reach the broker in batch order, and
// Run waits for the last one before it returns.
func TestAckOverlapsNextPull(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	release := fb.HoldAcks()
	defer release()
	r := start(t, cfg)
	m1 := fb.Enqueue(slackEvent("one", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != m1 {
		t.Fatalf("got %s", ev.MessageID)
	}
	waitFor(t, fb, "the first ack to arrive", func() bool { return fb.AcksHeld() == 1 })
	m2 := fb.Enqueue(slackEvent("two", "C1", "1.2"))
	if ev := col.next(t); ev.MessageID != m2 {
		t.Fatalf("got %s while the first ack was unanswered", ev.MessageID)
	}
	if n := len(fb.Acked()); n != 0 {
		t.Fatalf("%d acks applied while held", n)
	}
	release()
	waitFor(t, fb, "both acks", func() bool { return fb.Pending() == 0 })
	if got := fb.AckBatches(); len(got) != 2 || !slices.Equal(got[0], []string{m1}) || !slices.Equal(got[1], []string{m2}) {
		t.Fatalf("ack batches %v, want [[%s] [%s]]", got, m1, m2)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	col.none(t)
}

// Stopping the bridge while an ack is unanswered waits for that ack.
func TestStopWaitsForAckInFlight(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	release := fb.HoldAcks()
	defer release()
	r := start(t, cfg)
	m1 := fb.Enqueue(slackEvent("one", "C1", "1.1"))
	col.next(t)
	waitFor(t, fb, "the ack to arrive", func() bool { return fb.AcksHeld() == 1 })
	r.cancel()
	select {
	case err := <-r.done:
		close(r.done)
		t.Fatalf("Run returned (%v) before its ack was answered", err)
	default:
	}
	release()
	err := <-r.done
	close(r.done)       // for the cleanup's stop
	acked := fb.Acked() // as Run returned
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(acked, []string{m1}) {
		t.Fatalf("Run returned with %v acked, want [%s]", acked, m1)
	}
}

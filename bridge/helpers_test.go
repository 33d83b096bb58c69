package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

const testOrg = "T0123ABCD"

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 20 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newIdentity makes agent keys and registers them with fb directly.
func newIdentity(t testing.TB, fb *bridgetest.FakeBroker) bridge.Identity {
	t.Helper()
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sign, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	fb.SetAgent(box.Public, sign.Public())
	return bridge.Identity{
		BrokerURLs: []string{fb.URL()}, OrgID: fb.OrgID, BoxKey: box, SigningKey: sign,
		BrokerBoxKey: fb.BoxKey.Public, BrokerSigningKey: fb.SigningKey.Public(), AccessToken: fb.AccessToken,
	}
}

// collector is an in-process consumer.
type collector struct {
	ch   chan *bridge.Event
	mu   sync.Mutex
	fail int // fail the next n deliveries
}

func newCollector() *collector { return &collector{ch: make(chan *bridge.Event, 1000)} }

func (c *collector) deliver(_ context.Context, ev *bridge.Event) error {
	c.mu.Lock()
	if c.fail > 0 {
		c.fail--
		c.mu.Unlock()
		return errors.New("consumer not ready")
	}
	c.mu.Unlock()
	c.ch <- ev
	return nil
}

func (c *collector) next(t testing.TB) *bridge.Event {
	t.Helper()
	select {
	case ev := <-c.ch:
		return ev
	case <-time.After(testTimeout):
		t.Fatal("no event delivered")
		return nil
	}
}

func (c *collector) none(t testing.TB) {
	t.Helper()
	select {
	case ev := <-c.ch:
		t.Fatalf("unexpected delivery of %s", ev.MessageID)
	default:
	}
}

func baseConfig(t testing.TB, id bridge.Identity, dir string) bridge.Config {
	return bridge.Config{
		Identity: id, StateDir: dir, WaitSeconds: 5,
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
	}
}

// running is a bridge whose Run loop runs in the background.
type running struct {
	b      *bridge.Bridge
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg bridge.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	return startWith(t, cfg, ctx, cancel)
}

// startWith is start with a context the caller can cancel from inside a
// delivery.
func startWith(t testing.TB, cfg bridge.Config, ctx context.Context, cancel context.CancelFunc) *running {
	t.Helper()
	b, err := bridge.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		r.b.Close()
		return err
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// waitFor waits until cond holds, re-checking at each broker queue change.
func waitFor(t testing.TB, fb *bridgetest.FakeBroker, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		ch := fb.WaitChange()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func slackEvent(text, channel, ts string) protocol.Envelope {
	payload, _ := json.Marshal(map[string]any{
		"type": "event_callback", "team_id": testOrg, "event_id": "Ev" + ts,
		"event": map[string]any{"type": "message", "channel": channel, "ts": ts, "text": text, "user": "U1"},
	})
	return protocol.Envelope{Source: protocol.SourceSlack, Type: protocol.TypeEventCallback, BrokerTimestamp: time.Now().Unix(), Payload: payload}
}

// apiListener reserves a loopback port for the local API; set
// Config.ListenAddr to its address so that the Host check passes.
func apiListener(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// serveAPI serves the bridge's local API on ln and returns its base URL.
func serveAPI(t testing.TB, ln net.Listener, b *bridge.Bridge) string {
	srv := httptest.NewUnstartedServer(b.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var _ = http.StatusOK

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func newBridge(t testing.TB, cfg bridge.Config) (*bridge.Bridge, error) {
	b, err := bridge.New(cfg, testLogger(t))
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

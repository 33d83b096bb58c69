package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/crypto"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lifeEvents collects a bridge's lifecycle events.
type lifeEvents struct{ ch chan string }

func (e *lifeEvents) hook(event string, _ error) { e.ch <- event }

// wait returns once event arrives, failing on timeout.
func (e *lifeEvents) wait(t *testing.T, event string) []string {
	t.Helper()
	var seen []string
	deadline := time.After(testTimeout)
	for {
		select {
		case ev := <-e.ch:
			seen = append(seen, ev)
			if ev == event {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %q lifecycle event; saw %v", event, seen)
		}
	}
}

// startLife starts a bridge with a lifecycle hook and a captured log.
func startLife(t *testing.T, cfg bridge.Config, before func(*bridge.Bridge)) (*running, *lifeEvents, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	b, err := bridge.New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ev := &lifeEvents{ch: make(chan string, 100)}
	bridge.OnLifecycle(b, ev.hook)
	if before != nil {
		before(b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r, ev, logs
}

// writeIdentityFile writes id as the configuration file and returns its path.
func writeIdentityFile(t *testing.T, id bridge.Identity, issued time.Time) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.env")
	f := &bridge.EnvFile{}
	for k, v := range map[string]string{
		bridge.EnvBrokerURL: strings.Join(id.BrokerURLs, ","), bridge.EnvOrgID: id.OrgID,
		bridge.EnvServerPrivateKey: id.BoxKey.PrivateString(), bridge.EnvServerSigningKey: id.SigningKey.SeedString(),
		bridge.EnvBrokerPublicKey: id.BrokerBoxKey.String(), bridge.EnvBrokerSigningPubKey: id.BrokerSigningKey.String(),
		bridge.EnvAccessToken: id.AccessToken, "MY_APP_SETTING": "kept",
	} {
		f.Set(k, v)
	}
	if !id.AccessTokenExpiresAt.IsZero() {
		f.Set(bridge.EnvAccessTokenExpiresAt, id.AccessTokenExpiresAt.UTC().Format(time.RFC3339))
	}
	if !issued.IsZero() {
		f.Set(bridge.EnvAccessTokenIssuedAt, issued.UTC().Format(time.RFC3339))
	}
	if err := bridge.WriteEnvFile(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

func envValue(t *testing.T, path, key string) string {
	t.Helper()
	f, err := bridge.ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := f.Get(key)
	return v
}

func TestRenewAt(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		issued time.Time
		exp    time.Time
		want   time.Time
	}{
		{"90-day token", exp.Add(-90 * 24 * time.Hour), exp, exp.Add(-30 * 24 * time.Hour)},
		{"1-hour token", exp.Add(-time.Hour), exp, exp.Add(-20 * time.Minute)},
		{"no issue time: 90 days assumed", time.Time{}, exp, exp.Add(-30 * 24 * time.Hour)},
		{"issue time after expiry: assumed", exp.Add(time.Hour), exp, exp.Add(-30 * 24 * time.Hour)},
		{"no expiry: never", exp, time.Time{}, time.Time{}},
	} {
		if got := bridge.RenewAt(c.exp, c.issued); !got.Equal(c.want) {
			t.Errorf("%s: renew at %v, want %v", c.name, got, c.want)
		}
	}
}

// TestRenewWhenAThirdIsLeft: a token with less than a third of its life
// left is renewed at start, swapped in memory (pulls go on with the new
// one after the old stops working), written to the configuration file
// with the rest of the file kept, and logged without the token.
func TestRenewWhenAThirdIsLeft(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	now := time.Now()
	id.AccessTokenExpiresAt = now.Add(10 * 24 * time.Hour)
	id.AccessTokenIssuedAt = now.Add(-80 * 24 * time.Hour)
	id.ConfigPath = writeIdentityFile(t, id, id.AccessTokenIssuedAt)
	fb.SetRenewLifetime(48 * time.Hour)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.WaitSeconds = 1
	cfg.Deliver = col.deliver
	r, ev, logs := startLife(t, cfg, nil)
	ev.wait(t, "renewed")
	if fb.Renewals() != 1 {
		t.Fatalf("renewals %d, want 1", fb.Renewals())
	}
	newTok := fb.CurrentToken()
	if newTok == id.AccessToken {
		t.Fatal("the fake broker issued no new token")
	}
	// Once a pull has started after the swap, the old token stops working.
	p0 := fb.Pulls()
	waitFor(t, fb, "a pull with the new token", func() bool { return fb.Pulls() >= p0+2 })
	fb.EndTokenOverlap()
	mid := fb.Enqueue(slackEvent("after renewal", "C1", "1.1"))
	if got := col.next(t); got.MessageID != mid {
		t.Fatalf("delivered %s, want %s", got.MessageID, mid)
	}
	// The file: new token, expiry and issue time; other lines kept.
	if got := envValue(t, id.ConfigPath, bridge.EnvAccessToken); got != newTok {
		t.Fatalf("saved token %q, want the renewed one", got)
	}
	exp, err := time.Parse(time.RFC3339, envValue(t, id.ConfigPath, bridge.EnvAccessTokenExpiresAt))
	if err != nil || exp.Sub(now) < 47*time.Hour || exp.Sub(now) > 49*time.Hour {
		t.Fatalf("saved expiry %v (%v), want about 48h from now", exp, err)
	}
	if _, err := time.Parse(time.RFC3339, envValue(t, id.ConfigPath, bridge.EnvAccessTokenIssuedAt)); err != nil {
		t.Fatalf("saved issue time: %v", err)
	}
	if envValue(t, id.ConfigPath, "MY_APP_SETTING") != "kept" {
		t.Fatal("the rewrite lost an unrelated variable")
	}
	reloaded, err := bridge.LoadIdentity(id.ConfigPath, func(string) (string, bool) { return "", false }, true)
	if err != nil || reloaded.AccessToken != newTok {
		t.Fatalf("reload after renewal: %v", err)
	}
	if h := r.b.Health(); h.AccessTokenExpires == nil || !h.AccessTokenExpires.Equal(exp) {
		t.Fatalf("health expiry %v, want %v", h.AccessTokenExpires, exp)
	}
	l := logs.String()
	if !strings.Contains(l, "access token renewed") || !strings.Contains(l, "expires_at=") {
		t.Fatalf("renewal not logged with its expiry:\n%s", l)
	}
	if strings.Contains(l, newTok) || strings.Contains(l, id.AccessToken) {
		t.Fatal("a token appears in the log")
	}
}

// TestRenewNotDue: with more than a third left nothing is renewed.
func TestRenewNotDue(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	now := time.Now()
	id.AccessTokenExpiresAt = now.Add(61 * 24 * time.Hour)
	id.AccessTokenIssuedAt = now.Add(-29 * 24 * time.Hour)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	startLife(t, cfg, nil)
	mid := fb.Enqueue(slackEvent("x", "C1", "1.1"))
	if got := col.next(t); got.MessageID != mid {
		t.Fatalf("delivered %s", got.MessageID)
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if n := fb.Renewals(); n != 0 {
		t.Fatalf("renewed %d times with 61 of 90 days left", n)
	}
}

// TestRenewRetries: failed renewals are retried with backoff and logged
// as warnings; a renewal that cannot be saved keeps the new token in
// memory and retries the write.
func TestRenewRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fails     []bridgetest.Failure
		badConfig bool
		want      []string
		log       string
	}{
		{"broker errors", []bridgetest.Failure{{Status: 503, Message: "state store unavailable"}, {Status: 500, Message: "x"}},
			false, []string{"renew_failed", "renew_failed", "renewed"}, "access token renewal failed"},
		{"config not writable", nil, true, []string{"renewed", "save_failed", "save_failed"}, "renewed access token could not be saved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fb := bridgetest.New(t, testOrg)
			id := newIdentity(t, fb)
			id.AccessTokenExpiresAt = time.Now().Add(time.Hour)
			id.AccessTokenIssuedAt = time.Now().Add(-89 * 24 * time.Hour)
			id.ConfigPath = writeIdentityFile(t, id, id.AccessTokenIssuedAt)
			if tt.badConfig {
				id.ConfigPath = filepath.Join(t.TempDir(), "missing", "bridge.env")
			}
			fb.FailRenews(tt.fails...)
			col := newCollector()
			cfg := baseConfig(t, id, t.TempDir())
			cfg.WaitSeconds = 1
			cfg.Deliver = col.deliver
			_, ev, logs := startLife(t, cfg, nil)
			var seen []string
			for len(seen) < len(tt.want) {
				seen = append(seen, <-ev.ch)
			}
			if strings.Join(seen, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("events %v, want %v", seen, tt.want)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Fatalf("log lacks %q:\n%s", tt.log, logs.String())
			}
			// Either way the bridge goes on with a working token.
			p0 := fb.Pulls()
			waitFor(t, fb, "a pull with the new token", func() bool { return fb.Pulls() >= p0+2 })
			fb.EndTokenOverlap()
			mid := fb.Enqueue(slackEvent("x", "C1", "1.1"))
			if got := col.next(t); got.MessageID != mid {
				t.Fatalf("delivered %s", got.MessageID)
			}
		})
	}
}

// registerWithFile registers a fresh agent at fb through bridge.Register.
func registerWithFile(t *testing.T, fb *bridgetest.FakeBroker) (string, *bridge.Identity) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.env")
	id, err := bridge.Register(context.Background(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: fb.OrgID,
		RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	return path, id
}

func noEnv(string) (string, bool) { return "", false }

func rotateOpts(path, stateDir string) bridge.RotateOptions {
	return bridge.RotateOptions{ConfigPath: path, StateDir: stateDir, LookupEnv: noEnv}
}

// TestRotateKeys: messages queued before the rotation (sealed to the old
// key) and after it (to the new key) are all delivered by the bridge that
// starts afterwards; the old signing key is no longer accepted.
func TestRotateKeys(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	path, old := registerWithFile(t, fb)
	if _, err := time.Parse(time.RFC3339, envValue(t, path, bridge.EnvAccessTokenIssuedAt)); err != nil {
		t.Fatalf("register wrote no issue time: %v", err)
	}
	before := fb.Enqueue(slackEvent("before", "C1", "1.1"))
	stateDir := t.TempDir()
	id, err := bridge.RotateKeys(context.Background(), rotateOpts(path, stateDir))
	if err != nil {
		t.Fatal(err)
	}
	box, sig := fb.AgentKeys()
	if box != id.BoxKey.Public || sig != id.SigningKey.Public() || box == old.BoxKey.Public || sig == old.SigningKey.Public() {
		t.Fatal("the broker does not hold the new keys")
	}
	after := fb.Enqueue(slackEvent("after", "C2", "1.2"))
	for k, want := range map[string]string{
		bridge.EnvServerPrivateKey:           id.BoxKey.PrivateString(),
		bridge.EnvServerSigningKey:           id.SigningKey.SeedString(),
		bridge.EnvServerPublicKey:            id.BoxKey.Public.String(),
		bridge.EnvPreviousServerPrivateKey:   old.BoxKey.PrivateString(),
		bridge.EnvPendingServerPrivateKey:    "",
		bridge.EnvPendingServerSigningKey:    "",
		bridge.EnvPreviousServerKeyRetiredAt: id.PreviousBoxKeyRetiredAt.UTC().Format(time.RFC3339),
	} {
		if got := envValue(t, path, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	loaded, err := bridge.LoadIdentity(path, noEnv, true)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.PreviousBoxKey == nil || loaded.PreviousBoxKey.Public != old.BoxKey.Public {
		t.Fatal("LoadIdentity did not read the previous key")
	}
	col := newCollector()
	cfg := baseConfig(t, *loaded, stateDir)
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	got := map[string]bool{col.next(t).MessageID: true, col.next(t).MessageID: true}
	if !got[before] || !got[after] {
		t.Fatalf("delivered %v, want %s and %s", got, before, after)
	}
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	if h := r.b.Health(); h.Poison != 0 {
		t.Fatalf("%d poison messages", h.Poison)
	}
	r.stop(t)
	// A second rotation while the previous key is still kept is refused.
	if _, err := bridge.RotateKeys(context.Background(), rotateOpts(path, stateDir)); err == nil || !strings.Contains(err.Error(), "still kept") {
		t.Fatalf("second rotation = %v, want a refusal", err)
	}
	o := rotateOpts(path, stateDir)
	o.Force = true
	if _, err := bridge.RotateKeys(context.Background(), o); err != nil {
		t.Fatalf("forced second rotation: %v", err)
	}
	if fb.Rekeys() != 2 {
		t.Fatalf("rekeys %d, want 2", fb.Rekeys())
	}
}

// TestRotateKeysRefusals: a running bridge, keys from the environment.
func TestRotateKeysRefusals(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	path, id := registerWithFile(t, fb)
	stateDir := t.TempDir()
	cfg := baseConfig(t, *id, stateDir)
	cfg.Deliver = newCollector().deliver
	start(t, cfg)
	if _, err := bridge.RotateKeys(context.Background(), rotateOpts(path, stateDir)); !errors.Is(err, bridge.ErrBridgeRunning) {
		t.Fatalf("rotate while running = %v, want ErrBridgeRunning", err)
	}
	o := rotateOpts(path, t.TempDir())
	o.LookupEnv = func(k string) (string, bool) { return "x", k == bridge.EnvServerPrivateKey }
	if _, err := bridge.RotateKeys(context.Background(), o); err == nil || !strings.Contains(err.Error(), "environment") {
		t.Fatalf("rotate with keys in the environment = %v", err)
	}
	if fb.Rekeys() != 0 {
		t.Fatalf("rekeys %d after refusals", fb.Rekeys())
	}
	if envValue(t, path, bridge.EnvServerPrivateKey) != id.BoxKey.PrivateString() {
		t.Fatal("a refused rotation changed the file")
	}
}

// TestRotateKeysFailures: a lost answer is confirmed; a refusal changes
// nothing; an unreachable broker leaves the keys staged and the next run
// finishes with them.
func TestRotateKeysFailures(t *testing.T) {
	t.Parallel()
	t.Run("lost answer", func(t *testing.T) {
		t.Parallel()
		fb := bridgetest.New(t, testOrg)
		path, _ := registerWithFile(t, fb)
		fb.LoseNextRekeyAnswer()
		id, err := bridge.RotateKeys(context.Background(), rotateOpts(path, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if box, _ := fb.AgentKeys(); box != id.BoxKey.Public || envValue(t, path, bridge.EnvServerPrivateKey) != id.BoxKey.PrivateString() {
			t.Fatal("file and broker disagree after a lost answer")
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		fb := bridgetest.New(t, testOrg)
		path, old := registerWithFile(t, fb)
		fb.FailRekeys(bridgetest.Failure{Status: 409, Message: "agent already active"})
		_, err := bridge.RotateKeys(context.Background(), rotateOpts(path, t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "nothing changed") {
			t.Fatalf("refused rotation = %v", err)
		}
		if envValue(t, path, bridge.EnvPendingServerPrivateKey) != "" || envValue(t, path, bridge.EnvServerPrivateKey) != old.BoxKey.PrivateString() {
			t.Fatal("a refused rotation left staged keys or changed the current ones")
		}
	})
	t.Run("unreachable then resumed", func(t *testing.T) {
		t.Parallel()
		fb := bridgetest.New(t, testOrg)
		path, _ := registerWithFile(t, fb)
		fb.FailRekeys(bridgetest.Failure{Status: 503, Message: "x"})
		_, err := bridge.RotateKeys(context.Background(), rotateOpts(path, t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "run `bridge rotate-keys` again") {
			t.Fatalf("failed rotation = %v", err)
		}
		staged := envValue(t, path, bridge.EnvPendingServerPrivateKey)
		if staged == "" {
			t.Fatal("no staged keys")
		}
		id, err := bridge.RotateKeys(context.Background(), rotateOpts(path, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if id.BoxKey.PrivateString() != staged {
			t.Fatal("the resumed rotation did not use the staged keys")
		}
		if box, _ := fb.AgentKeys(); box != id.BoxKey.Public {
			t.Fatal("broker lacks the resumed keys")
		}
	})
}

// TestPreviousKeyDropped: the previous box key is dropped after an empty
// pull once it has not been needed for PreviousKeyQuiet, and kept while
// messages sealed to it still arrive.
func TestPreviousKeyDropped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		lastUse  time.Duration // before now
		oldMsg   bool
		wantDrop bool
	}{
		{"quiet for a day", 25 * time.Hour, false, true},
		{"used recently", time.Hour, false, false},
		{"a message still needs it", 25 * time.Hour, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := bridgetest.New(t, testOrg)
			id := newIdentity(t, fb)
			prev, err := crypto.GenerateBoxKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			id.PreviousBoxKey, id.PreviousBoxKeyRetiredAt = prev, time.Now().Add(-48*time.Hour)
			id.ConfigPath = writeIdentityFile(t, id, time.Time{})
			f, _ := bridge.ReadEnvFile(id.ConfigPath)
			f.Set(bridge.EnvPreviousServerPrivateKey, prev.PrivateString())
			f.Set(bridge.EnvPreviousServerKeyRetiredAt, id.PreviousBoxKeyRetiredAt.UTC().Format(time.RFC3339))
			if err := bridge.WriteEnvFile(id.ConfigPath, f); err != nil {
				t.Fatal(err)
			}
			var oldID string
			if tc.oldMsg {
				fb.SetAgent(prev.Public, id.SigningKey.Public())
				oldID = fb.Enqueue(slackEvent("sealed to the old key", "C1", "1.1"))
				fb.SetAgent(id.BoxKey.Public, id.SigningKey.Public())
			}
			col := newCollector()
			cfg := baseConfig(t, id, t.TempDir())
			cfg.WaitSeconds = 1
			cfg.Deliver = col.deliver
			_, ev, _ := startLife(t, cfg, func(b *bridge.Bridge) { bridge.SetPreviousKeyLastUse(b, time.Now().Add(-tc.lastUse)) })
			if tc.oldMsg {
				if got := col.next(t); got.MessageID != oldID {
					t.Fatalf("delivered %s, want the old-key message", got.MessageID)
				}
			}
			if tc.wantDrop {
				ev.wait(t, "previous_key_dropped")
				if envValue(t, id.ConfigPath, bridge.EnvPreviousServerPrivateKey) != "" {
					t.Fatal("the previous key is still in the file")
				}
				return
			}
			p0 := fb.Pulls()
			waitFor(t, fb, "more empty pulls", func() bool { return fb.Pulls() >= p0+3 })
			select {
			case e := <-ev.ch:
				t.Fatalf("unexpected lifecycle event %q", e)
			default:
			}
			if envValue(t, id.ConfigPath, bridge.EnvPreviousServerPrivateKey) != prev.PrivateString() {
				t.Fatal("the previous key left the file")
			}
		})
	}
}

// TestSpoolSurvivesRotation: events spooled for SSE consumers under the
// old key are still there after a rotation.
func TestSpoolSurvivesRotation(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, testOrg)
	path, id := registerWithFile(t, fb)
	stateDir := t.TempDir()
	cfg := baseConfig(t, *id, stateDir)
	cfg.Stream = true
	r := start(t, cfg)
	fb.Enqueue(slackEvent("spooled", "C1", "1.1"))
	waitFor(t, fb, "ack", func() bool { return fb.Pending() == 0 && len(fb.Acked()) == 1 })
	r.stop(t)
	if _, err := bridge.RotateKeys(context.Background(), rotateOpts(path, stateDir)); err != nil {
		t.Fatal(err)
	}
	loaded, err := bridge.LoadIdentity(path, noEnv, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := baseConfig(t, *loaded, stateDir)
	cfg2.Stream = true
	b, err := newBridge(t, cfg2)
	if err != nil {
		t.Fatal(err)
	}
	if h := b.Health(); h.StreamBuffered != 1 {
		t.Fatalf("stream buffer holds %d events after the rotation, want 1", h.StreamBuffered)
	}
}

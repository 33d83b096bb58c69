package brokerint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// syncLog is a log sink that closes renewed when "access token renewed"
// is logged (the bridge logs it after saving the new token).
type syncLog struct {
	mu      sync.Mutex
	b       bytes.Buffer
	renewed chan struct{}
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if bytes.Contains(p, []byte("access token renewed")) && l.renewed != nil {
		close(l.renewed)
		l.renewed = nil
	}
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pullStatus makes one signed zero-wait pull with token, dated at, and
// returns the broker's status.
func pullStatus(t *testing.T, base, org, token string, sig *crypto.SigningKey, at time.Time) int {
	t.Helper()
	maxN, wait := 1, 0
	ts := at.Unix()
	body, _ := json.Marshal(protocol.PullRequest{OrgID: org, WorkspaceID: org, ProtocolVersion: protocol.Version,
		MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: ts,
		Signature: protocol.EncodeSignature(sig.Sign(protocol.PullSigningBytes(org, ts, maxN, wait)))})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/inbox/pull", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRealBrokerRotateAndRenew: register → events queued → rotate-keys →
// more events → `bridge run` delivers all of them (sealed to the old key
// and to the new one), renews its token on its own (made due by its issue
// time), keeps delivering with the new token; the old token works during
// the broker's overlap and not after it.
func TestRealBrokerRotateAndRenew(t *testing.T) {
	const overlap = 2 * time.Minute
	rb := newRealBroker(t, func(c *broker.Config) { c.AccessTokenOverlap = overlap })
	org, token := rb.install("T0REAL07")
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	before, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	rb.slackEvent(org, "C0A", "1771464999.000101", "queued before the rotation 1")
	rb.slackEvent(org, "C0B", "1771464999.000102", "queued before the rotation 2")
	stateDir := t.TempDir()
	noEnv := func(string) (string, bool) { return "", false }
	rotated, err := bridge.RotateKeys(t.Context(), bridge.RotateOptions{ConfigPath: cfgPath, StateDir: stateDir, LookupEnv: noEnv})
	if err != nil {
		t.Fatalf("rotate-keys: %v", err)
	}
	rb.slackEvent(org, "C0C", "1771464999.000103", "queued after the rotation")

	id, err := bridge.LoadIdentity(cfgPath, noEnv, false)
	if err != nil {
		t.Fatal(err)
	}
	if id.SigningKey.Public() != rotated.SigningKey.Public() || id.PreviousBoxKey == nil {
		t.Fatal("the configuration does not hold the rotated keys")
	}
	oldToken := id.AccessToken
	// Pretend the token was issued 89 of its 90 days ago: due for renewal.
	id.AccessTokenIssuedAt = time.Now().Add(-89 * 24 * time.Hour)
	id.AccessTokenExpiresAt = time.Now().Add(24 * time.Hour)
	col := newCollector()
	cfg := baseConfig(*id, stateDir)
	cfg.WaitSeconds = 1
	cfg.Deliver = col.deliver
	logs := &syncLog{renewed: make(chan struct{})}
	renewed := logs.renewed
	b, err := bridge.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		b.Close()
	})
	texts := map[string]bool{}
	for range 3 {
		ev := col.next(t)
		var p struct {
			Event struct{ Text string } `json:"event"`
		}
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			t.Fatal(err)
		}
		texts[p.Event.Text] = true
	}
	for _, want := range []string{"queued before the rotation 1", "queued before the rotation 2", "queued after the rotation"} {
		if !texts[want] {
			t.Fatalf("not delivered: %q (got %v)", want, texts)
		}
	}
	if h := b.Health(); h.Poison != 0 {
		t.Fatalf("%d poison messages", h.Poison)
	}

	// The renewal: once logged, the file holds the new token.
	select {
	case <-renewed:
	case <-time.After(testTimeout):
		t.Fatalf("the bridge did not renew its token; log:\n%s", logs.String())
	}
	f, err := bridge.ReadEnvFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	newToken, _ := f.Get(bridge.EnvAccessToken)
	if newToken == "" || newToken == oldToken {
		t.Fatal("the configuration does not hold a renewed token")
	}
	if !strings.Contains(logs.String(), "saved=true") || strings.Contains(logs.String(), newToken) {
		t.Fatalf("renewal log wrong:\n%s", logs.String())
	}
	rb.slackEvent(org, "C0D", "1771464999.000104", "after the renewal")
	col.next(t)

	sig := id.SigningKey
	now := time.Now()
	if got := pullStatus(t, rb.url, org, oldToken, sig, now); got != http.StatusOK {
		t.Fatalf("old token during the overlap: %d", got)
	}
	if got := pullStatus(t, rb.url, org, newToken, sig, now); got != http.StatusOK {
		t.Fatalf("new token: %d", got)
	}
	// Past the overlap (the broker's clock moves; still inside the
	// 5-minute signature window).
	rb.clock.Store(int64(overlap + 30*time.Second))
	later := now.Add(overlap + 30*time.Second)
	if got := pullStatus(t, rb.url, org, oldToken, sig, later); got != http.StatusUnauthorized {
		t.Fatalf("old token after the overlap: %d, want 401", got)
	}
	if got := pullStatus(t, rb.url, org, newToken, sig, later); got != http.StatusOK {
		t.Fatalf("new token after the overlap: %d", got)
	}
	// The old signing key is refused.
	if got := pullStatus(t, rb.url, org, newToken, before.SigningKey, later); got != http.StatusForbidden {
		t.Fatalf("old signing key: %d, want 403", got)
	}
}

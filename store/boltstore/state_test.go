package boltstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/state/statetest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTestBoltState(t *testing.T, path string, opts ...StateOption) *State {
	t.Helper()
	st, err := OpenState(path, opts...)
	if err != nil {
		t.Fatalf("OpenState: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestBoltState(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store {
		return openTestBoltState(t, filepath.Join(t.TempDir(), StateFileName))
	})
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBoltStateTTL(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"), WithClock(clk.Now), WithCleanupInterval(0))
	hk := testHashKey(t)

	oauth := hk.Hash(KindOAuthState, "o")
	sig := hk.Hash(KindUnregisterSig, "s")
	if err := st.PutOAuthState(ctx, oauth, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.UseNonce(ctx, "a1", "n1", time.Minute); err != nil || !ok {
		t.Fatalf("UseNonce: %v %v", ok, err)
	}
	if ok, err := st.UseSignature(ctx, sig, time.Minute); err != nil || !ok {
		t.Fatalf("UseSignature: %v %v", ok, err)
	}
	if c, err := st.ClaimEvent(ctx, "Ev1"); err != nil || c != state.EventClaimed {
		t.Fatalf("ClaimEvent: %v %v", c, err)
	}
	if c, err := st.ClaimEvent(ctx, "Ev2"); err != nil || c != state.EventClaimed {
		t.Fatalf("ClaimEvent: %v %v", c, err)
	}
	if err := st.CompleteEvent(ctx, "Ev2", 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	// Pending claims lapse after EventPendingTTL.
	clk.Advance(state.EventPendingTTL)
	if c, _ := st.ClaimEvent(ctx, "Ev1"); c != state.EventClaimed {
		t.Fatalf("claim after pending TTL = %v, want EventClaimed", c)
	}
	// Everything with a one-minute TTL is gone after a minute (enforced on
	// read, before any cleanup ran).
	clk.Advance(time.Minute - state.EventPendingTTL)
	if ok, _ := st.ConsumeOAuthState(ctx, oauth); ok {
		t.Fatal("expired OAuth state was accepted")
	}
	if ok, _ := st.UseNonce(ctx, "a1", "n1", time.Minute); !ok {
		t.Fatal("nonce still remembered after its TTL")
	}
	if ok, _ := st.UseSignature(ctx, sig, time.Minute); !ok {
		t.Fatal("signature still remembered after its TTL")
	}
	if c, _ := st.ClaimEvent(ctx, "Ev2"); c != state.EventDone {
		t.Fatalf("completed event within its TTL: %v, want EventDone", c)
	}
	clk.Advance(time.Minute)
	if c, _ := st.ClaimEvent(ctx, "Ev2"); c != state.EventClaimed {
		t.Fatalf("completed event after its TTL: %v, want EventClaimed", c)
	}
}

func TestBoltStateCleanup(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"), WithClock(clk.Now), WithCleanupInterval(0))
	hk := testHashKey(t)

	now := clk.Now()
	reg := hk.Hash(KindRegistrationToken, "r")
	if err := st.PutRegistrationToken(ctx, reg, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, hk, "a1", "T1", now)
	a.AccessTokenExpiresAt = now.Add(2 * time.Hour)
	if err := st.RegisterAgent(ctx, reg, a, now, 0); err != nil {
		t.Fatal(err)
	}
	_ = st.PutOAuthState(ctx, hk.Hash(KindOAuthState, "o"), time.Minute)
	_, _ = st.UseNonce(ctx, "a1", "n", time.Minute)
	_, _ = st.UseSignature(ctx, hk.Hash(KindUnregisterSig, "s"), time.Minute)
	_, _ = st.ClaimEvent(ctx, "Ev")

	steps := []struct {
		advance time.Duration
		want    int
	}{
		{0, 0},
		{time.Minute, 4},   // oauth, nonce, signature, pending event
		{2 * time.Hour, 1}, // access token
		{24 * time.Hour, 1},
		{24 * time.Hour, 0},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		n, err := st.Cleanup(ctx)
		if err != nil || n != s.want {
			t.Fatalf("step %d: Cleanup = %d, %v; want %d", i, n, err, s.want)
		}
	}
	// The agent itself is not a TTL record; only its token went away.
	if _, err := st.GetAgent(ctx, "a1"); err != nil {
		t.Fatalf("agent after cleanup: %v", err)
	}
	if _, err := st.LookupAccessToken(ctx, a.AccessTokenHash, clk.Now()); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("access token after cleanup: %v", err)
	}
}

func TestBoltStateCleanupLoop(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"), WithClock(clk.Now), WithCleanupInterval(time.Millisecond))
	if err := st.PutOAuthState(ctx, testHashKey(t).Hash(KindOAuthState, "o"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	// Poll the file until the background loop has removed the record.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		_ = st.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(boltBktOAuth).Stats().KeyN
			return nil
		})
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background cleanup never removed the expired OAuth state")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBoltStatePersistsAndLocks(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	path := filepath.Join(dir, StateFileName)
	st, err := OpenState(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutInstallation(ctx, &state.Installation{OrgID: "T1", TeamName: "acme", BotToken: "sr1.a"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v, want 0700", di.Mode().Perm())
	}
	// A second open of the same file is refused while the first holds it.
	if st2, err := OpenState(path); err == nil {
		_ = st2.Close()
		t.Fatal("second OpenState of a locked file succeeded")
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Ping(ctx); err == nil {
		t.Fatal("ping after Close succeeded")
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	st = openTestBoltState(t, path)
	inst, err := st.GetInstallation(ctx, "T1")
	if err != nil || inst.TeamName != "acme" || inst.BotToken != "sr1.a" {
		t.Fatalf("after reopen: %+v %v", inst, err)
	}
}

// TestBoltStateRewrapFailureStops: a failing rewrap stops at the failing
// installation, reports what it changed before, and leaves the failing one
// as it was (rewrap writes one installation at a time, through
// UpdateInstallation, on both engines).
func TestBoltStateRewrapFailureStops(t *testing.T) {
	ctx := context.Background()
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"))
	for _, org := range []string{"T1", "T2"} {
		if err := st.PutInstallation(ctx, &state.Installation{OrgID: org, BotToken: "old-" + org}); err != nil {
			t.Fatal(err)
		}
	}
	boom := errors.New("boom")
	n, err := state.RewrapSecrets(ctx, st, func(stored, owner string) (string, bool, error) {
		if owner == "T2" {
			return "", false, boom
		}
		return "new-" + owner, true, nil
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("RewrapSecrets = %d, %v; want 1, boom", n, err)
	}
	for org, want := range map[string]string{"T1": "new-T1", "T2": "old-T2"} {
		inst, err := st.GetInstallation(ctx, org)
		if err != nil || inst.BotToken != want {
			t.Fatalf("%s after the failed rewrap: %+v %v, want token %q", org, inst, err, want)
		}
	}
}

func TestBoltStateContextCanceled(t *testing.T) {
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]func() error{
		"PutInstallation": func() error { return st.PutInstallation(ctx, &state.Installation{OrgID: "T1"}) },
		"ClaimEvent":      func() error { _, err := st.ClaimEvent(ctx, "e"); return err },
		"UseNonce":        func() error { _, err := st.UseNonce(ctx, "a", "n", time.Minute); return err },
		"Ping":            func() error { return st.Ping(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx: %v", name, err)
		}
	}
}

// BenchmarkBoltStateIngressDedup measures the per-event state work of the
// ingress path on the embedded store: ClaimEvent + CompleteEvent, from
// parallel goroutines (in memory, see State).
func BenchmarkBoltStateIngressDedup(b *testing.B) {
	st, err := OpenState(filepath.Join(b.TempDir(), "s.db"), WithCleanupInterval(0))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var seq atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "Ev" + strconv.FormatInt(seq.Add(1), 10)
			if c, err := st.ClaimEvent(ctx, id); err != nil || c != state.EventClaimed {
				b.Errorf("claim: %v %v", c, err)
				return
			}
			if err := st.CompleteEvent(ctx, id, state.DefaultEventDedupTTL); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkBoltStateUseNonce measures the replay record of every send: one
// fsynced write, concurrent ones sharing a transaction.
func BenchmarkBoltStateUseNonce(b *testing.B) {
	st, err := OpenState(filepath.Join(b.TempDir(), "s.db"), WithCleanupInterval(0))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := st.UseNonce(ctx, "a1", strconv.FormatInt(seq.Add(1), 10), 10*time.Minute); err != nil || !ok {
				b.Errorf("nonce: %v %v", ok, err)
				return
			}
		}
	})
}

// BenchmarkBoltStateLookupAccessToken measures the read done on every agent
// request.
func BenchmarkBoltStateLookupAccessToken(b *testing.B) {
	st, err := OpenState(filepath.Join(b.TempDir(), "s.db"), WithCleanupInterval(0))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	hk := testHashKey(b)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "r")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	a := testAgent(b, hk, "a1", "T1", now)
	if err := st.RegisterAgent(ctx, tok, a, now, 0); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := st.LookupAccessToken(ctx, a.AccessTokenHash, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestBoltStateRegistrationRetention checks that a used registration token
// answers ErrUsed for UsedRegistrationTokenRetention past its expiry and is
// forgotten (ErrNotFound) afterwards, even before a cleanup ran.
func TestBoltStateRegistrationRetention(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"), WithClock(clk.Now), WithCleanupInterval(0))
	hk := testHashKey(t)
	now := clk.Now()
	tok := hk.Hash(KindRegistrationToken, "r")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterAgent(ctx, tok, testAgent(t, hk, "a1", "T1", now), now, 0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		want    error
	}{
		{time.Hour, state.ErrUsed},
		{state.UsedRegistrationTokenRetention - time.Second, state.ErrUsed},
		{time.Second, state.ErrNotFound},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		err := st.RegisterAgent(ctx, tok, testAgent(t, hk, fmt.Sprint("b", i), "T1", clk.Now()), clk.Now(), 0)
		if !errors.Is(err, s.want) {
			t.Fatalf("step %d: RegisterAgent = %v, want %v", i, err, s.want)
		}
	}
}

// TestBoltListAgentsCache: ListAgents decodes each agent record once, yet
// every change to a record (renewal, rekey, deletion) shows in the next
// call, and what a caller does with a returned agent does not leak into
// the next one.
func TestBoltListAgentsCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTestBoltState(t, filepath.Join(t.TempDir(), "s.db"), WithCleanupInterval(0))
	hk := testHashKey(t)
	now := time.Now()
	reg := hk.Hash(KindRegistrationToken, "r")
	if err := st.PutRegistrationToken(ctx, reg, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, hk, "a1", "T1", now)
	if err := st.RegisterAgent(ctx, reg, a, now, 0); err != nil {
		t.Fatal(err)
	}
	list := func() *state.Agent {
		t.Helper()
		agents, err := st.ListAgents(ctx, "T1")
		if err != nil || len(agents) > 1 {
			t.Fatalf("ListAgents: %d agents, %v", len(agents), err)
		}
		if len(agents) == 0 {
			return nil
		}
		return agents[0]
	}
	first := list()
	first.AccessTokenExpiresAt = time.Time{} // a caller's change
	if got := list(); !got.AccessTokenExpiresAt.Equal(a.AccessTokenExpiresAt) {
		t.Fatalf("a caller's change leaked into the cache: expiry %v", got.AccessTokenExpiresAt)
	}
	newHash, newExpiry := hk.Hash(KindAccessToken, "renewed"), now.Add(3*time.Hour).Truncate(time.Second)
	if err := st.RenewAccessToken(ctx, "a1", newHash, newExpiry, now); err != nil {
		t.Fatal(err)
	}
	if got := list(); got.AccessTokenHash != newHash || !got.AccessTokenExpiresAt.Equal(newExpiry) {
		t.Fatalf("after renewal: %v until %v", got.AccessTokenHash, got.AccessTokenExpiresAt)
	}
	other := testAgent(t, hk, "a2", "T1", now)
	if err := st.RekeyAgent(ctx, "a1", other.BoxPublicKey, other.SigningPublicKey); err != nil {
		t.Fatal(err)
	}
	if got := list(); got.BoxPublicKey != other.BoxPublicKey || got.SigningPublicKey != other.SigningPublicKey {
		t.Fatal("after rekey: ListAgents returns the old keys")
	}
	if err := st.DeleteAgent(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if got := list(); got != nil {
		t.Fatalf("after delete: %+v", got)
	}
}

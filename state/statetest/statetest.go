package statetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// Options adapt the suite to an engine.
type Options struct {
	// AdvanceLimiter moves the clock the store's rate-limit buckets read
	// forward by d. Nil means the buckets follow the now argument of
	// Allow (an in-process limiter); a shared limiter reads its server's
	// clock and needs this test seam.
	AdvanceLimiter func(st state.Store, d time.Duration)
}

// Run is the state.Store conformance suite. Every engine runs it: newState
// returns a fresh, empty store (cleaned up by the test).
func Run(t *testing.T, newState func(t *testing.T) state.Store, opts ...Options) {
	var o Options
	for _, x := range opts {
		o = x
	}
	t.Run("Installation", func(t *testing.T) { stateInstallation(t, newState(t)) })
	t.Run("UpdateInstallation", func(t *testing.T) { stateUpdateInstallation(t, newState(t)) })
	t.Run("Register", func(t *testing.T) { stateRegister(t, newState(t)) })
	t.Run("RegisterRace", func(t *testing.T) { stateRegisterRace(t, newState(t)) })
	t.Run("RegisterLimit", func(t *testing.T) { stateRegisterLimit(t, newState(t)) })
	t.Run("RegisterLimitRace", func(t *testing.T) { stateRegisterLimitRace(t, newState(t)) })
	t.Run("RegisterReplace", func(t *testing.T) { stateRegisterReplace(t, newState(t)) })
	t.Run("ReplaceTokenErrors", func(t *testing.T) { stateReplaceTokenErrors(t, newState(t)) })
	t.Run("ReplaceRace", func(t *testing.T) { stateReplaceRace(t, newState(t)) })
	t.Run("MintGrant", func(t *testing.T) { stateMintGrant(t, newState(t)) })
	t.Run("Agents", func(t *testing.T) { stateAgents(t, newState(t)) })
	t.Run("OAuthState", func(t *testing.T) { stateOAuth(t, newState(t)) })
	t.Run("Events", func(t *testing.T) { stateEvents(t, newState(t)) })
	t.Run("Replay", func(t *testing.T) { stateReplay(t, newState(t)) })
	t.Run("Bucket", func(t *testing.T) { stateBucket(t, newState(t), o.AdvanceLimiter) })
	t.Run("Rewrap", func(t *testing.T) { stateRewrap(t, newState(t)) })
	t.Run("Drops", func(t *testing.T) { stateDrops(t, newState(t)) })
	t.Run("Renew", func(t *testing.T) { stateRenew(t, newState(t)) })
	t.Run("Rekey", func(t *testing.T) { stateRekey(t, newState(t)) })
	t.Run("LookupAgent", func(t *testing.T) { stateLookupAgent(t, newState(t)) })
}

// Token hash kinds of the suite (any distinct strings do).
const (
	KindAccessToken       = "access-token"
	KindRegistrationToken = "registration-token"
	KindOAuthState        = "oauth-state"
	KindUnregisterSig     = "unregister-signature"
)

// HashKey computes token hashes for the suite (the broker's own is
// broker.HashKey; the store only ever sees the hashes).
type HashKey struct{ k []byte }

// Hash returns the keyed hash of token for kind.
func (k *HashKey) Hash(kind, token string) state.TokenHash {
	var h state.TokenHash
	copy(h[:], crypto.HMACSHA256(k.k, []byte(kind+"\x00"+token)))
	return h
}

func testHashKey(testing.TB) *HashKey { return &HashKey{k: []byte("statetest hash key")} }

// NewAgent returns an agent of org with fresh keys and the access token
// "access-"+id, hashed with hk.
func NewAgent(t testing.TB, hk *HashKey, id, org string, now time.Time) *state.Agent {
	return testAgent(t, hk, id, org, now)
}

func testAgent(t testing.TB, hk *HashKey, id, org string, now time.Time) *state.Agent {
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return &state.Agent{ID: id, OrgID: org, BoxPublicKey: box.Public, SigningPublicKey: sig.Public(),
		CreatedAt: now, AccessTokenHash: hk.Hash(KindAccessToken, "access-"+id),
		AccessTokenExpiresAt: now.Add(state.DefaultAccessTokenTTL)}
}

func stateInstallation(t *testing.T, st state.Store) {
	ctx := context.Background()
	if _, err := st.GetInstallation(ctx, "T1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("get absent: %v, want ErrNotFound", err)
	}
	if err := st.RevokeInstallation(ctx, "T1", time.Now()); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("revoke absent: %v, want ErrNotFound", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	inst := &state.Installation{OrgID: "E1", TeamID: "T1", EnterpriseID: "E1", IsEnterpriseInstall: true,
		BotToken: "sr1.x", BotRefreshToken: "sr1.y", BotTokenExpiresAt: now.Add(time.Hour),
		BotScopes: []string{"chat:write"}, InstalledAt: now, UpdatedAt: now}
	if err := st.PutInstallation(ctx, inst); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetInstallation(ctx, "E1")
	if err != nil {
		t.Fatal(err)
	}
	if got.BotToken != "sr1.x" || got.BotRefreshToken != "sr1.y" || !got.IsEnterpriseInstall ||
		!got.InstalledAt.Equal(now) || len(got.BotScopes) != 1 || got.Revoked {
		t.Fatalf("round trip: %+v", got)
	}
	if err := st.RevokeInstallation(ctx, "E1", now); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetInstallation(ctx, "E1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Revoked || got.BotToken != "" || got.BotRefreshToken != "" || got.TeamID != "T1" {
		t.Fatalf("after revoke: %+v", got)
	}
	inst.BotToken = "sr1.z"
	if err := st.PutInstallation(ctx, inst); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetInstallation(ctx, "E1")
	if got.Revoked || got.BotToken != "sr1.z" {
		t.Fatalf("after reinstall: %+v", got)
	}
}

func stateRegister(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "reg-1")
	expired := hk.Hash(KindRegistrationToken, "reg-expired")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutRegistrationToken(ctx, expired, "T1", now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, hk, "a1", "T1", now)
	other := testAgent(t, hk, "a2", "T2", now)
	tests := []struct {
		name  string
		token state.TokenHash
		agent *state.Agent
		want  error
	}{
		{"unknown token", hk.Hash(KindRegistrationToken, "nope"), a, state.ErrNotFound},
		{"token of another org", tok, other, state.ErrNotFound},
		{"expired", expired, a, state.ErrExpired},
		{"ok", tok, a, nil},
		{"used", tok, a, state.ErrUsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := st.RegisterAgent(ctx, tt.token, tt.agent, now, 0)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("RegisterAgent = %v, want %v", err, tt.want)
			}
		})
	}
	// Same signing key again with a fresh token: ErrAgentExists, token kept.
	tok2 := hk.Hash(KindRegistrationToken, "reg-2")
	if err := st.PutRegistrationToken(ctx, tok2, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	dup := *a
	dup.ID = "a3"
	dup.AccessTokenHash = hk.Hash(KindAccessToken, "access-a3")
	if err := st.RegisterAgent(ctx, tok2, &dup, now, 0); !errors.Is(err, state.ErrAgentExists) {
		t.Fatalf("duplicate key: %v", err)
	}
	fresh := testAgent(t, hk, "a4", "T1", now)
	if err := st.RegisterAgent(ctx, tok2, fresh, now, 0); err != nil {
		t.Fatalf("token must survive an ErrAgentExists: %v", err)
	}
	g, err := st.LookupAccessToken(ctx, a.AccessTokenHash, now)
	if err != nil || g.AgentID != "a1" || g.OrgID != "T1" {
		t.Fatalf("lookup: %+v %v", g, err)
	}
	if _, err := st.LookupAccessToken(ctx, a.AccessTokenHash, now.Add(state.DefaultAccessTokenTTL+time.Second)); !errors.Is(err, state.ErrExpired) {
		t.Fatalf("lookup after expiry: %v", err)
	}
	if _, err := st.LookupAccessToken(ctx, hk.Hash(KindAccessToken, "x"), now); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("lookup unknown: %v", err)
	}
}

func stateRegisterRace(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "race")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		a := testAgent(t, hk, fmt.Sprintf("r%d", i), "T1", now)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.RegisterAgent(ctx, tok, a, now, 0)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, state.ErrUsed):
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations succeeded with one token, want 1", ok)
	}
}

func stateAgents(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	var agents []*state.Agent
	for i, org := range []string{"T1", "T1", "T2"} {
		tok := hk.Hash(KindRegistrationToken, fmt.Sprint("t", i))
		if err := st.PutRegistrationToken(ctx, tok, org, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		a := testAgent(t, hk, fmt.Sprint("ag", i), org, now)
		if err := st.RegisterAgent(ctx, tok, a, now, 0); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	list, err := st.ListAgents(ctx, "T1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "ag0" || list[1].ID != "ag1" {
		t.Fatalf("list T1: %+v", list)
	}
	if list[0].BoxPublicKey != agents[0].BoxPublicKey || list[0].SigningPublicKey != agents[0].SigningPublicKey ||
		list[0].AccessTokenHash != agents[0].AccessTokenHash || !list[0].CreatedAt.Equal(now) {
		t.Fatalf("agent round trip: %+v vs %+v", list[0], agents[0])
	}
	if l, err := st.ListAgents(ctx, "T9"); err != nil || len(l) != 0 {
		t.Fatalf("list empty org: %v %v", l, err)
	}
	if err := st.DeleteAgent(ctx, "ag0"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteAgent(ctx, "ag0"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := st.GetAgent(ctx, "ag0"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := st.LookupAccessToken(ctx, agents[0].AccessTokenHash, now); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("token of deleted agent: %v", err)
	}
	list, _ = st.ListAgents(ctx, "T1")
	if len(list) != 1 || list[0].ID != "ag1" {
		t.Fatalf("list after delete: %+v", list)
	}
	// The signing key is free again after deletion.
	tok := hk.Hash(KindRegistrationToken, "again")
	_ = st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour))
	again := *agents[0]
	again.ID = "ag9"
	if err := st.RegisterAgent(ctx, tok, &again, now, 0); err != nil {
		t.Fatalf("re-register deleted key: %v", err)
	}
}

func stateOAuth(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	h := hk.Hash(KindOAuthState, "s1")
	if err := st.PutOAuthState(ctx, h, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		ok, err := st.ConsumeOAuthState(ctx, h)
		if err != nil || ok != want {
			t.Fatalf("consume #%d = %v, %v; want %v", i, ok, err, want)
		}
	}
	if ok, _ := st.ConsumeOAuthState(ctx, hk.Hash(KindOAuthState, "never")); ok {
		t.Fatal("unknown state consumed")
	}
}

func stateEvents(t *testing.T, st state.Store) {
	ctx := context.Background()
	steps := []struct {
		do   string
		want state.EventClaim
	}{
		{"claim", state.EventClaimed},
		{"claim", state.EventInProgress},
		{"release", 0},
		{"claim", state.EventClaimed},
		{"complete", 0},
		{"claim", state.EventDone},
		{"release", 0}, // must not drop a completed record
		{"claim", state.EventDone},
	}
	for i, s := range steps {
		var err error
		var got state.EventClaim
		switch s.do {
		case "claim":
			got, err = st.ClaimEvent(ctx, "Ev1")
		case "release":
			err = st.ReleaseEvent(ctx, "Ev1")
		case "complete":
			err = st.CompleteEvent(ctx, "Ev1", time.Minute)
		}
		if err != nil {
			t.Fatalf("step %d %s: %v", i, s.do, err)
		}
		if s.do == "claim" && got != s.want {
			t.Fatalf("step %d: claim = %v, want %v", i, got, s.want)
		}
	}
	if c, _ := st.ClaimEvent(ctx, "Ev2"); c != state.EventClaimed {
		t.Fatalf("other event: %v", c)
	}
}

func stateReplay(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	tests := []struct {
		agent, nonce string
		want         bool
	}{
		{"a1", "n1", true},
		{"a1", "n1", false},
		{"a2", "n1", true},
		{"a1", "n2", true},
	}
	for i, tt := range tests {
		ok, err := st.UseNonce(ctx, tt.agent, tt.nonce, time.Minute)
		if err != nil || ok != tt.want {
			t.Fatalf("nonce %d: %v %v, want %v", i, ok, err, tt.want)
		}
	}
	h := hk.Hash(KindUnregisterSig, "sig")
	for i, want := range []bool{true, false} {
		ok, err := st.UseSignature(ctx, h, time.Minute)
		if err != nil || ok != want {
			t.Fatalf("signature %d: %v %v", i, ok, err)
		}
	}
}

// stateBucket: a bucket starts full, refuses past its burst with a
// retryAfter within one token's time, is per key, and refills at its rate.
// The rate is slow (one token per 100 s) so that a shared limiter, which
// reads its server's clock, cannot be pushed over by the test's own
// running time.
func stateBucket(t *testing.T, st state.Store, advance func(state.Store, time.Duration)) {
	ctx := context.Background()
	lim := state.RateLimit{Rate: 0.01, Burst: 3}
	start := time.UnixMilli(1_700_000_000_000)
	elapsed := time.Duration(0)
	at := func(d time.Duration) time.Time {
		if advance != nil {
			advance(st, d-elapsed)
		}
		elapsed = d
		return start.Add(d)
	}
	now := at(0)
	for i := range 3 {
		ok, _, err := st.Allow(ctx, "ag", lim, now)
		if err != nil || !ok {
			t.Fatalf("burst %d denied: %v", i, err)
		}
	}
	ok, retry, err := st.Allow(ctx, "ag", lim, now)
	if err != nil || ok || retry <= 0 || retry > 100*time.Second {
		t.Fatalf("over burst: ok=%v retry=%v err=%v", ok, retry, err)
	}
	if ok, _, _ := st.Allow(ctx, "other", lim, now); !ok {
		t.Fatal("buckets are per key")
	}
	if ok, _, _ := st.Allow(ctx, "ag", lim, at(110*time.Second)); !ok {
		t.Fatal("bucket did not refill")
	}
	if ok, _, _ := st.Allow(ctx, "ag", lim, at(120*time.Second)); ok {
		t.Fatal("bucket refilled too fast")
	}
}

func stateRewrap(t *testing.T, st state.Store) {
	ctx := context.Background()
	k1 := make([]byte, 32)
	k2 := make([]byte, 32)
	k2[0] = 1
	old, err := crypto.NewKeyring(map[uint32][]byte{1: k1})
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"T1", "T2"} {
		bt, err := old.Encrypt([]byte("xoxb-"+org), org)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := old.Encrypt([]byte("xoxe-"+org), org)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutInstallation(ctx, &state.Installation{OrgID: org, BotToken: bt, BotRefreshToken: rt}); err != nil {
			t.Fatal(err)
		}
	}
	_ = st.PutInstallation(ctx, &state.Installation{OrgID: "T3", Revoked: true})
	rotated, _ := crypto.NewKeyring(map[uint32][]byte{1: k1, 2: k2})
	n, err := state.RewrapSecrets(ctx, st, rotated.Rewrap)
	if err != nil || n != 4 {
		t.Fatalf("rewrap: n=%d err=%v, want 4", n, err)
	}
	if n, _ := state.RewrapSecrets(ctx, st, rotated.Rewrap); n != 0 {
		t.Fatalf("second rewrap changed %d", n)
	}
	only2, _ := crypto.NewKeyring(map[uint32][]byte{2: k2})
	inst, _ := st.GetInstallation(ctx, "T2")
	pt, err := only2.Decrypt(inst.BotToken, "T2")
	if err != nil || string(pt) != "xoxb-T2" {
		t.Fatalf("decrypt after rotation: %q %v", pt, err)
	}
}

package statetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// lifecycleOverlap is the old token's overlap the suite renews with.
const lifecycleOverlap = 10 * time.Minute

// registerTestAgent registers a with a fresh registration token.
func registerTestAgent(t *testing.T, st state.Store, hk *HashKey, a *state.Agent, now time.Time) error {
	t.Helper()
	tok := hk.Hash(KindRegistrationToken, "reg-for-"+a.ID)
	if err := st.PutRegistrationToken(context.Background(), tok, a.OrgID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return st.RegisterAgent(context.Background(), tok, a, now, 0)
}

func stateRenew(t *testing.T, st state.Store) {
	ls := state.Lifecycle(st)
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := testAgent(t, hk, "a1", "T1", now)
	short := testAgent(t, hk, "a2", "T1", now)
	short.AccessTokenExpiresAt = now.Add(5 * time.Minute)
	for _, ag := range []*state.Agent{a, short} {
		if err := registerTestAgent(t, st, hk, ag, now); err != nil {
			t.Fatal(err)
		}
	}
	newHash := hk.Hash(KindAccessToken, "renewed-a1")
	newExp := now.Add(state.DefaultAccessTokenTTL).Add(time.Hour)
	overlap := now.Add(lifecycleOverlap)
	if err := ls.RenewAccessToken(ctx, "a1", newHash, newExp, overlap); err != nil {
		t.Fatalf("RenewAccessToken: %v", err)
	}
	// Lookups by token and time.
	for _, c := range []struct {
		name string
		h    state.TokenHash
		at   time.Time
		want error
		exp  time.Time
	}{
		{"old token during the overlap", a.AccessTokenHash, now.Add(lifecycleOverlap - time.Second), nil, overlap},
		{"old token after the overlap", a.AccessTokenHash, overlap, state.ErrExpired, overlap},
		{"new token now", newHash, now, nil, newExp},
		{"new token until its expiry", newHash, newExp.Add(-time.Millisecond), nil, newExp},
		{"new token after its expiry", newHash, newExp, state.ErrExpired, newExp},
	} {
		g, err := st.LookupAccessToken(ctx, c.h, c.at)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: lookup = %v, want %v", c.name, err, c.want)
			continue
		}
		if g.AgentID != "a1" || g.OrgID != "T1" || !g.ExpiresAt.Equal(c.exp) {
			t.Errorf("%s: grant %+v, want agent a1 of T1 until %v", c.name, g, c.exp)
		}
	}
	got, err := st.GetAgent(ctx, "a1")
	if err != nil || got.AccessTokenHash != newHash || !got.AccessTokenExpiresAt.Equal(newExp) {
		t.Fatalf("agent after renewal: %+v %v", got, err)
	}
	list, err := st.ListAgents(ctx, "T1")
	if err != nil || len(list) != 2 || list[0].AccessTokenHash != newHash {
		t.Fatalf("ListAgents after renewal: %+v %v", list, err)
	}
	if list[1].AccessTokenHash != short.AccessTokenHash {
		t.Fatal("renewing a1 changed a2")
	}

	// The overlap never lengthens a token that ends sooner.
	if err := ls.RenewAccessToken(ctx, "a2", hk.Hash(KindAccessToken, "renewed-a2"), newExp, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if g, err := st.LookupAccessToken(ctx, short.AccessTokenHash, now); err != nil || !g.ExpiresAt.Equal(short.AccessTokenExpiresAt) {
		t.Fatalf("short token after renewal: %+v %v, want its own expiry %v", g, err, short.AccessTokenExpiresAt)
	}

	// A second renewal cuts the first renewed token to its overlap.
	third := hk.Hash(KindAccessToken, "renewed-a1-again")
	overlap2 := now.Add(time.Minute)
	if err := ls.RenewAccessToken(ctx, "a1", third, newExp, overlap2); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LookupAccessToken(ctx, newHash, overlap2); !errors.Is(err, state.ErrExpired) {
		t.Fatalf("renewed token after the next renewal's overlap: %v", err)
	}

	if err := ls.RenewAccessToken(ctx, "nobody", hk.Hash(KindAccessToken, "x"), newExp, overlap); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("renew unknown agent = %v, want state.ErrNotFound", err)
	}
	// Deleting the agent removes its current token.
	if err := st.DeleteAgent(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LookupAccessToken(ctx, third, now); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("current token after delete: %v", err)
	}
}

func stateRekey(t *testing.T, st state.Store) {
	ls := state.Lifecycle(st)
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := testAgent(t, hk, "a1", "T1", now)
	b := testAgent(t, hk, "a2", "T1", now)
	for _, ag := range []*state.Agent{a, b} {
		if err := registerTestAgent(t, st, hk, ag, now); err != nil {
			t.Fatal(err)
		}
	}
	newBox, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	newSig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	// Another agent's signing key: refused, nothing changed.
	if err := ls.RekeyAgent(ctx, "a1", newBox.Public, b.SigningPublicKey); !errors.Is(err, state.ErrAgentExists) {
		t.Fatalf("rekey to a2's key = %v, want state.ErrAgentExists", err)
	}
	if got, err := st.GetAgent(ctx, "a1"); err != nil || got.BoxPublicKey != a.BoxPublicKey || got.SigningPublicKey != a.SigningPublicKey {
		t.Fatalf("a refused rekey changed the agent: %+v %v", got, err)
	}
	if err := ls.RekeyAgent(ctx, "a1", newBox.Public, newSig.Public()); err != nil {
		t.Fatalf("RekeyAgent: %v", err)
	}
	got, err := st.GetAgent(ctx, "a1")
	if err != nil || got.BoxPublicKey != newBox.Public || got.SigningPublicKey != newSig.Public() ||
		got.AccessTokenHash != a.AccessTokenHash {
		t.Fatalf("agent after rekey: %+v %v", got, err)
	}
	list, err := st.ListAgents(ctx, "T1")
	if err != nil || len(list) != 2 || list[0].BoxPublicKey != newBox.Public {
		t.Fatalf("ListAgents after rekey: %+v %v", list, err)
	}
	// The index moved: the new key is taken, the old one is free.
	dupNew := testAgent(t, hk, "a3", "T1", now)
	dupNew.SigningPublicKey = newSig.Public()
	if err := registerTestAgent(t, st, hk, dupNew, now); !errors.Is(err, state.ErrAgentExists) {
		t.Fatalf("registering the new key elsewhere = %v, want state.ErrAgentExists", err)
	}
	reuseOld := testAgent(t, hk, "a4", "T1", now)
	reuseOld.SigningPublicKey = a.SigningPublicKey
	if err := registerTestAgent(t, st, hk, reuseOld, now); err != nil {
		t.Fatalf("registering the old key after rekey: %v", err)
	}
	// Same signing key, new box key only.
	box2, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if err := ls.RekeyAgent(ctx, "a1", box2.Public, newSig.Public()); err != nil {
		t.Fatalf("box-only rekey: %v", err)
	}
	if got, err := st.GetAgent(ctx, "a1"); err != nil || got.BoxPublicKey != box2.Public {
		t.Fatalf("agent after box-only rekey: %+v %v", got, err)
	}
	if err := ls.RekeyAgent(ctx, "nobody", box2.Public, newSig.Public()); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("rekey unknown agent = %v, want state.ErrNotFound", err)
	}
	// Deleting the agent frees its new key.
	if err := st.DeleteAgent(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	dupNew.ID = "a5"
	if err := registerTestAgent(t, st, hk, dupNew, now); err != nil {
		t.Fatalf("registering the rekeyed key after delete: %v", err)
	}
}

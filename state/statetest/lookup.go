package statetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/state"
)

// checkLookup calls LookupAgentByAccessToken(h, at) twice (an engine that
// remembers something about a token on the first call takes another path
// on the second) and checks each answer against want and wantAgent ("" for
// none) and against the two calls it replaces, LookupAccessToken and then
// GetAgent.
func checkLookup(t *testing.T, st state.Store, name string, h state.TokenHash, at time.Time, want error, wantAgent string) {
	t.Helper()
	ctx := context.Background()
	for round := range 2 {
		g, a, err := st.LookupAgentByAccessToken(ctx, h, at)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("%s (call %d): err %v, want %v", name, round+1, err, want)
			continue
		}
		// The reference: today's two sequential calls.
		rg, rerr := st.LookupAccessToken(ctx, h, at)
		var ra *state.Agent
		if rerr == nil {
			ra, rerr = st.GetAgent(ctx, rg.AgentID)
		}
		if !errors.Is(rerr, want) || (want == nil && rerr != nil) {
			t.Errorf("%s: the two calls answer %v, want %v", name, rerr, want)
		}
		if g.AgentID != rg.AgentID || g.OrgID != rg.OrgID || !g.ExpiresAt.Equal(rg.ExpiresAt) {
			t.Errorf("%s (call %d): grant %+v, the two calls' %+v", name, round+1, g, rg)
		}
		switch {
		case wantAgent == "" && a != nil:
			t.Errorf("%s (call %d): agent %+v with error %v", name, round+1, a, err)
		case wantAgent != "" && (a == nil || a.ID != wantAgent || g.AgentID != wantAgent):
			t.Errorf("%s (call %d): agent %+v grant %+v, want agent %s", name, round+1, a, g, wantAgent)
		case a != nil && (ra == nil || !sameAgent(a, ra)):
			t.Errorf("%s (call %d): agent %+v, GetAgent's %+v", name, round+1, a, ra)
		}
	}
}

// sameAgent reports whether a and b hold the same record.
func sameAgent(a, b *state.Agent) bool {
	return a.ID == b.ID && a.OrgID == b.OrgID && a.BoxPublicKey == b.BoxPublicKey &&
		a.SigningPublicKey == b.SigningPublicKey && a.CreatedAt.Equal(b.CreatedAt) &&
		a.AccessTokenHash == b.AccessTokenHash && a.AccessTokenExpiresAt.Equal(b.AccessTokenExpiresAt) &&
		a.RespondUntil.Equal(b.RespondUntil)
}

// stateLookupAgent: LookupAgentByAccessToken answers what LookupAccessToken
// and GetAgent answer, through registration, renewal (old and new tokens
// during and after the overlap), rekey, deletion and replacement, each
// token looked up before it changes as well as after.
func stateLookupAgent(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	a1, a2 := testAgent(t, hk, "l-a1", "T1", now), testAgent(t, hk, "l-a2", "T1", now)
	gone := testAgent(t, hk, "l-gone", "T2", now)
	short := testAgent(t, hk, "l-short", "T2", now)
	short.AccessTokenExpiresAt = now.Add(time.Minute)
	for _, a := range []*state.Agent{a1, a2, gone, short} {
		if err := registerTestAgent(t, st, hk, a, now); err != nil {
			t.Fatal(err)
		}
	}

	checkLookup(t, st, "unknown token", hk.Hash(KindAccessToken, "nobody"), now, state.ErrNotFound, "")
	checkLookup(t, st, "registered token", a1.AccessTokenHash, now, nil, "l-a1")
	checkLookup(t, st, "short token before its expiry", short.AccessTokenHash, now, nil, "l-short")
	checkLookup(t, st, "short token at its expiry", short.AccessTokenHash, short.AccessTokenExpiresAt, state.ErrExpired, "")
	checkLookup(t, st, "token after its expiry", a2.AccessTokenHash, a2.AccessTokenExpiresAt.Add(time.Second), state.ErrExpired, "")

	// Rekey: same token, the new keys are read.
	checkLookup(t, st, "token before rekey", gone.AccessTokenHash, now, nil, "l-gone")
	nk := testAgent(t, hk, "l-keys", "T2", now)
	if err := st.RekeyAgent(ctx, "l-gone", nk.BoxPublicKey, nk.SigningPublicKey); err != nil {
		t.Fatal(err)
	}
	if _, a, err := st.LookupAgentByAccessToken(ctx, gone.AccessTokenHash, now); err != nil || a.SigningPublicKey != nk.SigningPublicKey {
		t.Fatalf("after rekey: %+v %v, want the new signing key", a, err)
	}

	// Deletion (unregister, admin revoke): the current token is gone; a
	// token still in its renewal overlap names an agent that is gone.
	goneRenewed := hk.Hash(KindAccessToken, "l-gone-renewed")
	if err := st.RenewAccessToken(ctx, "l-gone", goneRenewed, now.Add(time.Hour), now.Add(lifecycleOverlap)); err != nil {
		t.Fatal(err)
	}
	checkLookup(t, st, "renewed token before deletion", goneRenewed, now, nil, "l-gone")
	if err := st.DeleteAgent(ctx, "l-gone"); err != nil {
		t.Fatal(err)
	}
	checkLookup(t, st, "token of a deleted agent", goneRenewed, now, state.ErrNotFound, "")
	checkLookup(t, st, "overlapping token of a deleted agent", gone.AccessTokenHash, now, state.ErrNotFound, "")

	// Renewal: the old and the new token both name a1, whose record has
	// the new token; the old one ends with the overlap.
	renewed := hk.Hash(KindAccessToken, "l-a1-renewed")
	newExp := now.Add(state.DefaultAccessTokenTTL).Add(time.Hour)
	overlap := now.Add(lifecycleOverlap)
	if err := st.RenewAccessToken(ctx, "l-a1", renewed, newExp, overlap); err != nil {
		t.Fatal(err)
	}
	during := overlap.Add(-time.Second)
	checkLookup(t, st, "old token during the overlap", a1.AccessTokenHash, during, nil, "l-a1")
	checkLookup(t, st, "new token during the overlap", renewed, during, nil, "l-a1")
	if _, a, err := st.LookupAgentByAccessToken(ctx, a1.AccessTokenHash, during); err != nil || a.AccessTokenHash != renewed {
		t.Fatalf("old token during the overlap: agent %+v %v, want the renewed record", a, err)
	}
	checkLookup(t, st, "old token after the overlap", a1.AccessTokenHash, overlap, state.ErrExpired, "")
	checkLookup(t, st, "new token after the overlap", renewed, overlap, nil, "l-a1")

	// Replacement deletes the org's other agents and their tokens, the
	// renewed one included; the new agent's token works.
	checkLookup(t, st, "a2 before the replacement", a2.AccessTokenHash, now, nil, "l-a2")
	rep := putMode(t, st, hk, "l-rep", "T1", state.RegistrationReplace, now.Add(time.Hour))
	n := testAgent(t, hk, "l-new", "T1", now)
	if _, err := st.Register(ctx, rep, n, now, 0); err != nil {
		t.Fatal(err)
	}
	checkLookup(t, st, "replaced agent's token", a2.AccessTokenHash, now, state.ErrNotFound, "")
	checkLookup(t, st, "replaced agent's renewed token", renewed, now, state.ErrNotFound, "")
	checkLookup(t, st, "replaced agent's old token", a1.AccessTokenHash, during, state.ErrNotFound, "")
	checkLookup(t, st, "replacement's token", n.AccessTokenHash, now, nil, "l-new")

	// A cancelled context is an error, not an answer.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := st.LookupAgentByAccessToken(cctx, n.AccessTokenHash, now); err == nil ||
		errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrExpired) {
		t.Fatalf("cancelled lookup: %v, want the context's error", err)
	}
}

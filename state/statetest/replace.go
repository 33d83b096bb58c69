package statetest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/state"
)

// putMode stores a registration token of mode for org, valid until exp.
func putMode(t *testing.T, st state.Store, hk *HashKey, name, org string, mode state.RegistrationMode, exp time.Time) state.TokenHash {
	t.Helper()
	tok := hk.Hash(KindRegistrationToken, name)
	if err := st.PutRegistrationTokenMode(context.Background(), tok, org, mode, exp); err != nil {
		t.Fatal(err)
	}
	return tok
}

func agentIDs(t *testing.T, st state.Store, org string) []string {
	t.Helper()
	list, err := st.ListAgents(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(list))
	for _, a := range list {
		ids = append(ids, a.ID)
	}
	sort.Strings(ids)
	return ids
}

func sameIDs(a, b []string) bool {
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

// stateRegisterReplace: a replace token deletes every other agent of the
// org (record, access token, signing-key index) and returns them; other
// orgs are untouched; limit 1 admits a replacement; add tokens report
// mode add and replace nothing.
func stateRegisterReplace(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	a1, a2 := testAgent(t, hk, "r-a1", "T1", now), testAgent(t, hk, "r-a2", "T1", now)
	b1 := testAgent(t, hk, "r-b1", "T2", now)
	for i, a := range []*state.Agent{a1, a2, b1} {
		tok := putMode(t, st, hk, fmt.Sprint("r-add", i), a.OrgID, state.RegistrationAdd, now.Add(time.Hour))
		res, err := st.Register(ctx, tok, a, now, 0)
		if err != nil || res.Mode != state.RegistrationAdd || len(res.Replaced) != 0 {
			t.Fatalf("add %s: %+v, %v", a.ID, res, err)
		}
	}
	// a1 renewed its token: the replacement must delete the current one.
	renewed := hk.Hash(KindAccessToken, "r-a1-renewed")
	if err := st.RenewAccessToken(ctx, a1.ID, renewed, now.Add(time.Hour), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rep := putMode(t, st, hk, "r-rep", "T1", state.RegistrationReplace, now.Add(time.Hour))
	n := testAgent(t, hk, "r-new", "T1", now)
	res, err := st.Register(ctx, rep, n, now, 1)
	if err != nil {
		t.Fatalf("replace with limit 1: %v", err)
	}
	if res.Mode != state.RegistrationReplace {
		t.Fatalf("mode %q, want replace", res.Mode)
	}
	var gone []string
	for _, a := range res.Replaced {
		gone = append(gone, a.ID)
		if a.OrgID != "T1" {
			t.Fatalf("replaced an agent of %s", a.OrgID)
		}
	}
	sort.Strings(gone)
	if !sameIDs(gone, []string{"r-a1", "r-a2"}) {
		t.Fatalf("replaced %v, want [r-a1 r-a2]", gone)
	}
	if ids := agentIDs(t, st, "T1"); !sameIDs(ids, []string{"r-new"}) {
		t.Fatalf("agents of T1 after replace: %v", ids)
	}
	if ids := agentIDs(t, st, "T2"); !sameIDs(ids, []string{"r-b1"}) {
		t.Fatalf("agents of T2 after replace of T1: %v", ids)
	}
	for _, tc := range []struct {
		name string
		h    state.TokenHash
	}{{"a1 renewed token", renewed}, {"a2 token", a2.AccessTokenHash}} {
		if _, err := st.LookupAccessToken(ctx, tc.h, now); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("%s after replace: %v, want ErrNotFound", tc.name, err)
		}
	}
	for _, id := range []string{"r-a1", "r-a2"} {
		if _, err := st.GetAgent(ctx, id); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("GetAgent(%s) after replace: %v", id, err)
		}
	}
	if g, err := st.LookupAccessToken(ctx, n.AccessTokenHash, now); err != nil || g.AgentID != "r-new" {
		t.Fatalf("new agent's token: %+v %v", g, err)
	}
	// The replaced agents' signing keys are free again.
	again := *a2
	again.ID, again.AccessTokenHash = "r-a2-again", hk.Hash(KindAccessToken, "r-a2-again")
	tok := putMode(t, st, hk, "r-again", "T1", state.RegistrationAdd, now.Add(time.Hour))
	if _, err := st.Register(ctx, tok, &again, now, 0); err != nil {
		t.Fatalf("re-register a replaced agent's key: %v", err)
	}
	// A replace token may reuse the key of an agent it replaces.
	same := *n
	same.ID, same.AccessTokenHash = "r-same", hk.Hash(KindAccessToken, "r-same")
	rep2 := putMode(t, st, hk, "r-rep2", "T1", state.RegistrationReplace, now.Add(time.Hour))
	if _, err := st.Register(ctx, rep2, &same, now, 1); err != nil {
		t.Fatalf("replace reusing a replaced agent's key: %v", err)
	}
	// But not the key of an agent of another org.
	foreign := *b1
	foreign.ID, foreign.OrgID, foreign.AccessTokenHash = "r-foreign", "T1", hk.Hash(KindAccessToken, "r-foreign")
	rep3 := putMode(t, st, hk, "r-rep3", "T1", state.RegistrationReplace, now.Add(time.Hour))
	if _, err := st.Register(ctx, rep3, &foreign, now, 0); !errors.Is(err, state.ErrAgentExists) {
		t.Fatalf("replace with another org's key: %v, want ErrAgentExists", err)
	}
	if ids := agentIDs(t, st, "T1"); !sameIDs(ids, []string{"r-same"}) {
		t.Fatalf("a failed replace changed the agents: %v", ids)
	}
}

// stateReplaceTokenErrors: an unknown, foreign, expired or used replace
// token fails exactly like an add token, and deletes nothing.
func stateReplaceTokenErrors(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	keep := testAgent(t, hk, "re-keep", "T1", now)
	if _, err := st.Register(ctx, putMode(t, st, hk, "re-add", "T1", state.RegistrationAdd, now.Add(time.Hour)), keep, now, 0); err != nil {
		t.Fatal(err)
	}
	used := putMode(t, st, hk, "re-used", "T1", state.RegistrationReplace, now.Add(time.Hour))
	if _, err := st.Register(ctx, used, testAgent(t, hk, "re-first", "T1", now), now, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Register(ctx, putMode(t, st, hk, "re-add2", "T1", state.RegistrationAdd, now.Add(time.Hour)), keep, now, 0); err != nil {
		t.Fatalf("re-add the replaced agent: %v", err)
	}
	expired := putMode(t, st, hk, "re-exp", "T1", state.RegistrationReplace, now.Add(-time.Second))
	foreign := putMode(t, st, hk, "re-foreign", "T2", state.RegistrationReplace, now.Add(time.Hour))
	tests := []struct {
		name string
		tok  state.TokenHash
		want error
	}{
		{"unknown", hk.Hash(KindRegistrationToken, "re-nope"), state.ErrNotFound},
		{"other org", foreign, state.ErrNotFound},
		{"expired", expired, state.ErrExpired},
		{"used", used, state.ErrUsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Register(ctx, tt.tok, testAgent(t, hk, "re-x", "T1", now), now, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Register = %v, want %v", err, tt.want)
			}
			if ids := agentIDs(t, st, "T1"); !sameIDs(ids, []string{"re-first", "re-keep"}) {
				t.Fatalf("a failed replace changed the agents: %v", ids)
			}
		})
	}
	if _, err := state.ParseRegistrationMode("bogus"); err == nil {
		t.Fatal("ParseRegistrationMode accepted bogus")
	}
	if err := st.PutRegistrationTokenMode(ctx, hk.Hash(KindRegistrationToken, "re-bad"), "T1", "bogus", now.Add(time.Hour)); err == nil {
		t.Fatal("PutRegistrationTokenMode accepted mode bogus")
	}
}

// stateReplaceRace: an add and a replace registering concurrently are
// serialised: the result is either "add then replace" (only the replacer
// is left and it replaced the adder) or "replace then add" (both are
// left and the replacer did not replace the adder); the agents that were
// there before are gone either way.
func stateReplaceRace(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	for round := range 6 {
		org := fmt.Sprint("TR", round)
		old := testAgent(t, hk, fmt.Sprint("rr-old", round), org, now)
		if _, err := st.Register(ctx, putMode(t, st, hk, fmt.Sprint("rr-o", round), org, state.RegistrationAdd, now.Add(time.Hour)), old, now, 0); err != nil {
			t.Fatal(err)
		}
		addTok := putMode(t, st, hk, fmt.Sprint("rr-a", round), org, state.RegistrationAdd, now.Add(time.Hour))
		repTok := putMode(t, st, hk, fmt.Sprint("rr-r", round), org, state.RegistrationReplace, now.Add(time.Hour))
		adder := testAgent(t, hk, fmt.Sprint("rr-add", round), org, now)
		replacer := testAgent(t, hk, fmt.Sprint("rr-rep", round), org, now)
		var wg sync.WaitGroup
		var addErr, repErr error
		var rep state.RegisterResult
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; _, addErr = st.Register(ctx, addTok, adder, now, 0) }()
		go func() { defer wg.Done(); <-start; rep, repErr = st.Register(ctx, repTok, replacer, now, 0) }()
		close(start)
		wg.Wait()
		if addErr != nil || repErr != nil {
			t.Fatalf("round %d: add %v, replace %v", round, addErr, repErr)
		}
		replacedAdder := false
		for _, a := range rep.Replaced {
			if a.ID == adder.ID {
				replacedAdder = true
			}
		}
		ids := agentIDs(t, st, org)
		switch {
		case sameIDs(ids, []string{replacer.ID}):
			if !replacedAdder {
				t.Fatalf("round %d: adder gone but not reported replaced: %+v", round, rep.Replaced)
			}
		case sameIDs(ids, []string{adder.ID, replacer.ID}):
			if replacedAdder {
				t.Fatalf("round %d: adder reported replaced but still there", round)
			}
		default:
			t.Fatalf("round %d: agents %v: not a serial outcome", round, ids)
		}
	}
}

// stateMintGrant: a mint grant is consumed once, returns its org, and an
// expired one is refused.
func stateMintGrant(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	g := hk.Hash("mint", "g1")
	if err := st.PutMintGrant(ctx, g, "T1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if org, err := st.ConsumeMintGrant(ctx, g, now); err != nil || org != "T1" {
		t.Fatalf("consume: %q %v", org, err)
	}
	if _, err := st.ConsumeMintGrant(ctx, g, now); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("second consume: %v, want ErrNotFound", err)
	}
	exp := hk.Hash("mint", "g2")
	if err := st.PutMintGrant(ctx, exp, "T1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ConsumeMintGrant(ctx, exp, now.Add(2*time.Minute)); !errors.Is(err, state.ErrExpired) {
		t.Fatalf("consume after expiry: %v, want ErrExpired", err)
	}
	if _, err := st.ConsumeMintGrant(ctx, hk.Hash("mint", "nope"), now); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("consume unknown: %v", err)
	}
}

package statetest

import (
	"context"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"sync"
	"testing"
	"time"
)

// stateRegisterLimit: RegisterAgentLimited counts the org's agents, leaves
// the token unconsumed when full, ignores other orgs, and a deleted agent
// frees its place.
func stateRegisterLimit(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	put := func(name, org string) state.TokenHash {
		tok := hk.Hash(KindRegistrationToken, name)
		if err := st.PutRegistrationToken(ctx, tok, org, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t1, t2, t3, other := put("l1", "T1"), put("l2", "T1"), put("l3", "T1"), put("lo", "T2")
	a1 := testAgent(t, hk, "l-a1", "T1", now)
	steps := []struct {
		name  string
		token state.TokenHash
		agent *state.Agent
		max   int
		want  error
	}{
		{"first under limit 1", t1, a1, 1, nil},
		{"second over limit 1", t2, testAgent(t, hk, "l-a2", "T1", now), 1, state.ErrOrgFull},
		{"same key still ErrAgentExists first", t2, func() *state.Agent { d := *a1; d.ID = "l-dup"; return &d }(), 1, state.ErrAgentExists},
		{"other org unaffected", other, testAgent(t, hk, "l-b1", "T2", now), 1, nil},
		{"token kept after ErrOrgFull; limit 2 admits", t2, testAgent(t, hk, "l-a3", "T1", now), 2, nil},
		{"unlimited (0) admits a third", t3, testAgent(t, hk, "l-a4", "T1", now), 0, nil},
	}
	for _, s := range steps {
		err := st.RegisterAgent(ctx, s.token, s.agent, now, s.max)
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: RegisterAgentLimited = %v, want %v", s.name, err, s.want)
		}
	}
	// Deleting agents frees places.
	for _, id := range []string{"l-a1", "l-a3", "l-a4"} {
		if err := st.DeleteAgent(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	t4 := put("l4", "T1")
	if err := st.RegisterAgent(ctx, t4, testAgent(t, hk, "l-a5", "T1", now), now, 1); err != nil {
		t.Fatalf("after unregistering every agent: %v", err)
	}
}

// stateRegisterLimitRace: concurrent registrations of one org with distinct
// tokens and limit 1: exactly one wins, the rest get ErrOrgFull.
func stateRegisterLimitRace(t *testing.T, st state.Store) {
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		tok := hk.Hash(KindRegistrationToken, fmt.Sprint("lr", i))
		if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		a := testAgent(t, hk, fmt.Sprintf("lr%d", i), "T1", now)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.RegisterAgent(ctx, tok, a, now, 1)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, state.ErrOrgFull):
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d registrations succeeded with limit 1, want 1", ok)
	}
	if agents, err := st.ListAgents(ctx, "T1"); err != nil || len(agents) != 1 {
		t.Fatalf("ListAgents = %d agents, %v; want 1", len(agents), err)
	}
}

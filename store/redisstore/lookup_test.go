package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/state/statetest"
)

// lookupState returns a State with agents ag1 and ag2 of org T1 registered
// (their access tokens "access-ag1", "access-ag2").
func lookupState(t testing.TB) (*State, []*state.Agent) {
	t.Helper()
	rdb, prefix := testRedis(t)
	st := NewState(rdb, prefix)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	var agents []*state.Agent
	for _, id := range []string{"ag1", "ag2"} {
		tok := hk.Hash(KindRegistrationToken, "reg-"+id)
		if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		a := testAgent(t, hk, id, "T1", now)
		if err := st.RegisterAgent(ctx, tok, a, now, 0); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	return st, agents
}

// TestLookupAgentRoundTrips: the first lookup of a token is the two
// commands in sequence; every later one is one pipeline of both.
func TestLookupAgentRoundTrips(t *testing.T) {
	t.Parallel()
	st, agents := lookupState(t)
	g := newGate(t, st.rdb)
	g.release()
	ctx := context.Background()
	a := agents[0]
	for i, want := range []struct{ pipelines, singles int }{
		{0, 2}, // HMGET, then GET
		{1, 0}, // both in one pipeline
		{1, 0},
	} {
		p0, s0 := g.counts()
		gr, got, err := st.LookupAgentByAccessToken(ctx, a.AccessTokenHash, time.Now())
		if err != nil || got.ID != a.ID || gr.AgentID != a.ID || got.SigningPublicKey != a.SigningPublicKey {
			t.Fatalf("lookup %d: %+v %+v %v", i, gr, got, err)
		}
		p1, s1 := g.counts()
		if len(p1)-len(p0) != want.pipelines || s1-s0 != want.singles {
			t.Errorf("lookup %d: %d pipelines %v and %d lone commands, want %d and %d",
				i, len(p1)-len(p0), p1[len(p0):], s1-s0, want.pipelines, want.singles)
		}
		for _, n := range p1[len(p0):] {
			if n != 2 {
				t.Errorf("lookup %d: a pipeline of %d commands, want 2", i, n)
			}
		}
	}
}

// TestLookupAgentHint: the remembered token → agent mapping is only a
// hint. Whatever happens to the records behind it, each lookup answers
// what LookupAccessToken and GetAgent answer now.
func TestLookupAgentHint(t *testing.T) {
	t.Parallel()
	hk := testHashKey(t)
	for _, tc := range []struct {
		name string
		// change alters the records after the token's agent was learnt.
		change    func(t *testing.T, st *State, a, b *state.Agent)
		want      error
		wantAgent string // "" with an error
		wantGrant string // the grant's agent id, "" for a zero grant
	}{
		{"unchanged", func(*testing.T, *State, *state.Agent, *state.Agent) {}, nil, "ag1", "ag1"},
		{"token record deleted", func(t *testing.T, st *State, a, _ *state.Agent) {
			mustDo(t, st.rdb.Del(context.Background(), st.k.accessToken(a.AccessTokenHash.String())).Err())
		}, state.ErrNotFound, "", ""},
		{"agent record deleted", func(t *testing.T, st *State, a, _ *state.Agent) {
			mustDo(t, st.rdb.Del(context.Background(), st.k.agent(a.ID)).Err())
		}, state.ErrNotFound, "", "ag1"},
		{"token names another agent", func(t *testing.T, st *State, a, b *state.Agent) {
			mustDo(t, st.rdb.HSet(context.Background(), st.k.accessToken(a.AccessTokenHash.String()), "agent", b.ID).Err())
		}, nil, "ag2", "ag2"},
		{"token names an absent agent", func(t *testing.T, st *State, a, _ *state.Agent) {
			mustDo(t, st.rdb.HSet(context.Background(), st.k.accessToken(a.AccessTokenHash.String()), "agent", "nobody").Err())
		}, state.ErrNotFound, "", "nobody"},
		{"token expired", func(t *testing.T, st *State, a, _ *state.Agent) {
			mustDo(t, st.rdb.HSet(context.Background(), st.k.accessToken(a.AccessTokenHash.String()), "exp", time.Now().Add(-time.Second).UnixMilli()).Err())
		}, state.ErrExpired, "", "ag1"},
		{"agent rekeyed", func(t *testing.T, st *State, a, _ *state.Agent) {
			k := statetest.NewAgent(t, hk, "keys", "T1", time.Now())
			mustDo(t, st.RekeyAgent(context.Background(), a.ID, k.BoxPublicKey, k.SigningPublicKey))
		}, nil, "ag1", "ag1"},
		{"state closed", func(t *testing.T, st *State, _, _ *state.Agent) { mustDo(t, st.Close()) }, nil, "ag1", "ag1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, agents := lookupState(t)
			a, b := agents[0], agents[1]
			ctx := context.Background()
			if _, _, err := st.LookupAgentByAccessToken(ctx, a.AccessTokenHash, time.Now()); err != nil {
				t.Fatal(err)
			}
			tc.change(t, st, a, b)
			for round := range 2 {
				now := time.Now()
				g, got, err := st.LookupAgentByAccessToken(ctx, a.AccessTokenHash, now)
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Fatalf("round %d: err %v, want %v", round, err, tc.want)
				}
				if g.AgentID != tc.wantGrant || (got == nil) != (tc.wantAgent == "") || (got != nil && got.ID != tc.wantAgent) {
					t.Fatalf("round %d: grant %+v agent %+v, want grant of %q and agent %q", round, g, got, tc.wantGrant, tc.wantAgent)
				}
				// The two calls it replaces agree.
				rg, rerr := st.LookupAccessToken(ctx, a.AccessTokenHash, now)
				var ra *state.Agent
				if rerr == nil {
					ra, rerr = st.GetAgent(ctx, rg.AgentID)
				}
				if !errors.Is(rerr, tc.want) || (tc.want == nil && rerr != nil) || rg.AgentID != g.AgentID || !rg.ExpiresAt.Equal(g.ExpiresAt) {
					t.Fatalf("round %d: the two calls answer %+v %v", round, rg, rerr)
				}
				if got != nil && (ra == nil || *ra != *got) {
					t.Fatalf("round %d: agent %+v, GetAgent's %+v", round, got, ra)
				}
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLookupAgentConcurrent: many goroutines looking up tokens while they
// are learnt, forgotten and deleted (run with -race).
func TestLookupAgentConcurrent(t *testing.T) {
	t.Parallel()
	st, agents := lookupState(t)
	ctx := context.Background()
	hk := testHashKey(t)
	unknown := hk.Hash(KindAccessToken, "nobody")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if (w+i)%5 == 0 {
					if _, _, err := st.LookupAgentByAccessToken(ctx, unknown, time.Now()); !errors.Is(err, state.ErrNotFound) {
						errs <- fmt.Errorf("unknown token: %v", err)
						return
					}
					continue
				}
				a := agents[(w+i)%len(agents)]
				_, got, err := st.LookupAgentByAccessToken(ctx, a.AccessTokenHash, time.Now())
				if err != nil || got.ID != a.ID {
					errs <- fmt.Errorf("lookup of %s: %+v %v", a.ID, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkLookupAgent measures resolving an access token to its agent,
// as every signed agent request does: "twocalls" is LookupAccessToken then
// GetAgent (two round trips), "onecall" LookupAgentByAccessToken with the
// token's agent known (one pipeline). One caller at a time; this process's
// and the Redis server's CPU per lookup are reported. Interleave the two:
//
//	for i in 1 2 3 4 5 6; do for v in twocalls onecall; do
//	  go test -run x -bench "LookupAgent/$v" -count 1 ./store/redisstore/; done; done
func BenchmarkLookupAgent(b *testing.B) {
	for _, v := range []struct {
		name   string
		lookup func(ctx context.Context, st *State, h state.TokenHash) (*state.Agent, error)
	}{
		{"twocalls", func(ctx context.Context, st *State, h state.TokenHash) (*state.Agent, error) {
			g, err := st.LookupAccessToken(ctx, h, time.Now())
			if err != nil {
				return nil, err
			}
			return st.GetAgent(ctx, g.AgentID)
		}},
		{"onecall", func(ctx context.Context, st *State, h state.TokenHash) (*state.Agent, error) {
			_, a, err := st.LookupAgentByAccessToken(ctx, h, time.Now())
			return a, err
		}},
	} {
		b.Run(v.name, func(b *testing.B) {
			st, agents := lookupState(b)
			ctx := context.Background()
			h := agents[0].AccessTokenHash
			if _, err := v.lookup(ctx, st, h); err != nil { // learn the token's agent
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0, srv0 := processCPU(), redisServerCPU(st.rdb)
			b.ResetTimer()
			for range b.N {
				if a, err := v.lookup(ctx, st, h); err != nil || a.ID != agents[0].ID {
					b.Fatalf("lookup: %+v %v", a, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64((redisServerCPU(st.rdb)-srv0).Nanoseconds())/1e3/float64(b.N), "redis-cpu-µs/op")
		})
	}
}

// processCPU returns this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

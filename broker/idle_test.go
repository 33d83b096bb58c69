package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// countingState counts LastPulls round trips.
type countingState struct {
	state.Store
	lastPulls atomic.Int64
}

func (c *countingState) LastPulls(ctx context.Context, ids []string) (map[string]time.Time, error) {
	c.lastPulls.Add(1)
	return c.Store.LastPulls(ctx, ids)
}

func (h *harness) pausedCount(srv *Server) float64 {
	h.t.Helper()
	return counterValue(h.t, srv.idle.paused.WithLabelValues(PausedReasonIdle))
}

// TestPauseIdleFanout: with PauseIdleFanout an agent that has not pulled
// for AgentIdleAfter gets no copy; the skip is counted, shown by the admin
// view as fan-out paused, and reported in the agent's events_dropped
// notice (agent_idle) on its next pull, after which it is active again.
// An agent that pulled and one registered recently (never pulled) get
// their copies. Without the setting the idle agent gets its copy too.
func TestPauseIdleFanout(t *testing.T) {
	tests := []struct {
		name  string
		pause bool
	}{{"paused", true}, {"off", false}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachEngine(t, func(t *testing.T, engine harnessOpt) {
				h := newHarness(t, engine, withConfig(func(c *Config) {
					c.PauseIdleFanout, c.AgentIdleAfter = tt.pause, time.Hour
				}))
				h.clock.Freeze()
				org, tok := h.install(slackfake.Install{TeamID: []string{"T0IDL0001", "T0IDL0002"}[i]})
				active := h.register(org, tok)
				idle := h.register(org, h.mint(org, state.RegistrationAdd))
				h.clock.Advance(2 * time.Hour)
				if got := active.pull(10, 0); len(got) != 0 {
					t.Fatalf("active agent's first pull: %d messages", len(got))
				}
				young := h.register(org, h.mint(org, state.RegistrationAdd))
				ev, evID := eventBody(org, "while idle")
				h.postEvent(h.url, ev)
				for name, c := range map[string]*agentClient{"active": active, "young": young} {
					if got := c.pull(10, 0); len(got) != 1 || got[0].Env.Type != protocol.TypeEventCallback {
						t.Fatalf("%s agent: %d messages, want the event", name, len(got))
					}
				}
				idleID := agentID(t, h, idle)
				st, err := h.q.Stats(context.Background(), idleID)
				if err != nil {
					t.Fatal(err)
				}
				adm, err := h.srv.Admin(AdminOptions{})
				if err != nil {
					t.Fatal(err)
				}
				view, err := adm.Agent(context.Background(), idleID)
				if err != nil {
					t.Fatal(err)
				}
				if !view.Idle || view.FanoutPaused != tt.pause {
					t.Fatalf("admin view idle=%v fanout_paused=%v, want idle and paused=%v", view.Idle, view.FanoutPaused, tt.pause)
				}
				if !tt.pause {
					if st.Depth() != 1 || h.pausedCount(h.srv) != 0 {
						t.Fatalf("without pausing: idle inbox %d, paused %v; want 1 and 0", st.Depth(), h.pausedCount(h.srv))
					}
					return
				}
				if st.Depth() != 0 || h.pausedCount(h.srv) != 1 {
					t.Fatalf("paused: idle inbox %d, paused counter %v; want 0 and 1", st.Depth(), h.pausedCount(h.srv))
				}
				msgs := idle.pull(10, 0)
				if len(msgs) != 1 || msgs[0].Env.Type != protocol.TypeEventsDropped {
					t.Fatalf("idle agent's return: %d messages, want the events_dropped notice", len(msgs))
				}
				var n protocol.DropNotice
				if err := json.Unmarshal(msgs[0].Env.Payload, &n); err != nil {
					t.Fatal(err)
				}
				if n.Count != 1 || n.Reasons[protocol.DropAgentIdle] != 1 || len(n.EventIDs) != 1 || n.EventIDs[0] != evID {
					t.Fatalf("notice %+v, want one agent_idle drop of %s", n, evID)
				}
				idle.ack(msgs[0].ID)
				ev2, id2 := eventBody(org, "after the return")
				h.postEvent(h.url, ev2)
				if got := idle.pull(10, 0); len(got) != 1 || !strings.Contains(string(got[0].Env.Payload), id2) {
					t.Fatalf("returned agent: %d messages, want the new event", len(got))
				}
				if h.pausedCount(h.srv) != 1 {
					t.Fatalf("paused counter %v after the return, want 1", h.pausedCount(h.srv))
				}
			})
		})
	}
}

// TestIdleFanoutCache: the paused fan-out reads last pulls from the store
// at most once per IdleRefreshInterval (not per event), and a pull on
// another replica ends the pause once the cache entry is refreshed.
func TestIdleFanoutCache(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		var spies []*countingState
		h := newHarness(t, engine, withConfig(func(c *Config) {
			c.PauseIdleFanout, c.AgentIdleAfter = true, time.Hour
		}), func(h *harness) {
			h.wrapSt = func(st state.Store) state.Store {
				c := &countingState{Store: st}
				spies = append(spies, c)
				return c
			}
		})
		h.clock.Freeze()
		org, tok := h.install(slackfake.Install{TeamID: "T0IDL0003"})
		a := h.register(org, tok)
		h.clock.Advance(2 * time.Hour)
		for range 3 {
			ev, _ := eventBody(org, "idle")
			h.postEvent(h.url, ev)
		}
		if n := spies[0].lastPulls.Load(); n != 1 {
			t.Fatalf("3 events within the refresh interval read last pulls %d times, want 1", n)
		}
		if p := h.pausedCount(h.srv); p != 3 {
			t.Fatalf("paused %v, want 3", p)
		}
		_, _, _, _, url2 := h.newReplica()
		a.base = url2
		_ = a.pull(10, 0) // the pull on replica 2 records it in the store
		ev, _ := eventBody(org, "cached")
		h.postEvent(h.url, ev)
		if p := h.pausedCount(h.srv); p != 4 {
			t.Fatalf("replica 1 within the interval: paused %v, want 4 (cached)", p)
		}
		h.clock.Advance(IdleRefreshInterval + time.Second)
		ev, id := eventBody(org, "refreshed")
		h.postEvent(h.url, ev)
		if p := h.pausedCount(h.srv); p != 4 {
			t.Fatalf("after the refresh interval: paused %v, want still 4", p)
		}
		if n := spies[0].lastPulls.Load(); n != 2 {
			t.Fatalf("last pulls read %d times, want 2", n)
		}
		found := false
		for _, m := range a.pull(10, 0) {
			found = found || strings.Contains(string(m.Env.Payload), id)
		}
		if !found {
			t.Fatal("the agent that pulled on replica 2 did not get the event after the refresh")
		}
	})
}

// failingPulls fails every LastPulls.
type failingPulls struct{ state.Store }

func (failingPulls) LastPulls(context.Context, []string) (map[string]time.Time, error) {
	return nil, errors.New("injected: last pulls unavailable")
}

// TestPauseIdleFailsOpen: when the last pulls cannot be read, fan-out
// pauses nobody (the idle agent gets its copy) and says so in the log.
func TestPauseIdleFailsOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withConfig(func(c *Config) { c.PauseIdleFanout, c.AgentIdleAfter = true, time.Hour }),
		func(h *harness) { h.wrapSt = func(st state.Store) state.Store { return failingPulls{st} } })
	h.clock.Freeze()
	org, tok := h.install(slackfake.Install{TeamID: "T0IDL0004"})
	a := h.register(org, tok)
	h.clock.Advance(2 * time.Hour)
	ev, _ := eventBody(org, "store trouble")
	h.postEvent(h.url, ev)
	if st, err := h.q.Stats(context.Background(), agentID(t, h, a)); err != nil || st.Depth() != 1 {
		t.Fatalf("idle agent's inbox %+v %v, want the copy", st, err)
	}
	if p := h.pausedCount(h.srv); p != 0 {
		t.Fatalf("paused %v, want 0", p)
	}
	if !strings.Contains(h.logs.String(), "fan-out pauses no idle agent") {
		t.Fatal("no log line about the failed last-pull read")
	}
}

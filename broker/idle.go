package broker

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// IdleRefreshInterval is the most often one process reads an agent's last
// pull from the store for the paused fan-out (Config.PauseIdleFanout);
// between reads the in-process cache answers, so the webhook path does no
// extra store round trip per event. A pull in this process updates the
// cache at once; a pull on another replica is seen within this interval.
const IdleRefreshInterval = 5 * time.Second

// PausedReasonIdle is the reason label of sealrelay_broker_fanout_paused_total.
const PausedReasonIdle = "idle"

// maxIdleEntries bounds the last-pull cache.
const maxIdleEntries = 100_000

// idleFanout caches the agents' last pulls for the paused fan-out and
// counts the copies it skips.
type idleFanout struct {
	paused *prometheus.CounterVec // reason

	mu      sync.Mutex
	entries map[string]idleEntry
}

type idleEntry struct {
	pull    time.Time // last known pull; zero = none recorded
	fetched time.Time // when pull was read (or noted)
}

func newIdleFanout(reg prometheus.Registerer) (*idleFanout, error) {
	f := &idleFanout{paused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_fanout_paused_total",
		Help: "Event copies not queued because fan-out to the agent is paused (--pause-idle-fanout), by reason."}, []string{"reason"})}
	if err := reg.Register(f.paused); err != nil {
		return nil, err
	}
	return f, nil
}

// note records a pull of id at now seen by this process.
func (f *idleFanout) note(id string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries == nil || len(f.entries) >= maxIdleEntries {
		f.entries = make(map[string]idleEntry)
	}
	f.entries[id] = idleEntry{pull: now, fetched: now}
}

// forget drops id from the cache (the agent is gone).
func (f *idleFanout) forget(id string) {
	f.mu.Lock()
	delete(f.entries, id)
	f.mu.Unlock()
}

// lastPulls returns the last pulls of ids, reading from the store (one
// LastPulls call) only the ones not read within IdleRefreshInterval.
func (f *idleFanout) lastPulls(ctx context.Context, as state.Admin, ids []string, now time.Time) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	var stale []string
	f.mu.Lock()
	for _, id := range ids {
		e, ok := f.entries[id]
		if ok && now.Sub(e.fetched) < IdleRefreshInterval && !now.Before(e.fetched) {
			out[id] = e.pull
			continue
		}
		stale = append(stale, id)
	}
	f.mu.Unlock()
	if len(stale) == 0 {
		return out, nil
	}
	got, err := as.LastPulls(ctx, stale)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.entries == nil || len(f.entries)+len(stale) > maxIdleEntries {
		f.entries = make(map[string]idleEntry)
	}
	for _, id := range stale {
		p := got[id]
		if e, ok := f.entries[id]; ok && e.pull.After(p) {
			p = e.pull // a local pull noted meanwhile is newer
		}
		f.entries[id] = idleEntry{pull: p, fetched: now}
		out[id] = p
	}
	return out, nil
}

// agentIdle reports whether an agent registered at created whose last
// recorded pull is pull (zero: never) is idle at now: no pull for
// idleAfter, counted from registration when it never pulled. Admin.view
// and the paused fan-out share it.
func agentIdle(created, pull, now time.Time, idleAfter time.Duration) bool {
	since := pull
	if since.IsZero() {
		since = created
	}
	return now.Sub(since) >= idleAfter
}

// pauseIdle returns the agents fan-out should store a copy for: with
// Config.PauseIdleFanout every idle agent (see agentIdle) is left out,
// each skipped copy counted in sealrelay_broker_fanout_paused_total and
// recorded as protocol.DropAgentIdle for the agent's events_dropped
// notice. When the last pulls cannot be read it pauses nothing (a
// delivered copy is better than a wrongly skipped one) and logs.
func (s *Server) pauseIdle(ctx context.Context, agents []*state.Agent, eventID string, now time.Time) []*state.Agent {
	if !s.cfg.PauseIdleFanout || len(agents) == 0 {
		return agents
	}
	idleAfter := s.cfg.AgentIdleAfter
	var check []string
	for _, a := range agents {
		if now.Sub(a.CreatedAt) >= idleAfter { // younger agents are active
			check = append(check, a.ID)
		}
	}
	if len(check) == 0 {
		return agents
	}
	pulls, err := s.idle.lastPulls(ctx, s.st, check, now)
	if err != nil {
		s.logger(ctx).Warn("reading last pulls failed; fan-out pauses no idle agent for this event", "err", err)
		return agents
	}
	keep := make([]*state.Agent, 0, len(agents))
	for _, a := range agents {
		if !agentIdle(a.CreatedAt, pulls[a.ID], now, idleAfter) {
			keep = append(keep, a)
			continue
		}
		s.idle.paused.WithLabelValues(PausedReasonIdle).Inc()
		s.logger(ctx).Debug("event copy paused: agent idle", "agent_id", a.ID)
		s.recordDrop(ctx, a.ID, protocol.DropAgentIdle, eventID, now)
	}
	return keep
}

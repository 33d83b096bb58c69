package broker

import (
	"context"
	"github.com/sealrelay/sealrelay/state"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/audit"
)

// Admin returns an Admin on the server's stores whose revocations also
// drop the server's per-agent caches (shared keys, depth metrics, pull
// marks). opts.Now defaults to the server's clock.
func (s *Server) Admin(opts AdminOptions) (*Admin, error) {
	if opts.Now == nil {
		opts.Now = s.now
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = s.cfg.AgentIdleAfter
	}
	opts.PauseIdleFanout = s.cfg.PauseIdleFanout
	if opts.MintToken == nil {
		opts.MintToken = s.MintRegistrationToken
	}
	next := opts.OnRevoke
	opts.OnRevoke = func(a *state.Agent) {
		s.shared.Forget(a.BoxPublicKey)
		s.depth.forget(a.ID)
		s.pullMarks.undo(a.ID)
		s.idle.forget(a.ID)
		s.revokeWatch.cancel(a.ID) // waiting pulls answer empty now; the next one gets 401
		s.log.Info("agent revoked by an operator", "agent_id", a.ID, "org_id", a.OrgID)
		s.audit(context.Background(), audit.Event{Kind: audit.KindRevoke, Agent: a.ID, Org: a.OrgID, Outcome: "ok"})
		if next != nil {
			next(a)
		}
	}
	return NewAdmin(s.st, s.q, opts)
}

// pullRecordTimeout bounds the last-pull write of one pull.
const pullRecordTimeout = time.Second

// recordPull writes the agent's last pull time, at most once per
// PullRecordInterval per agent in this process. A failure only logs: a
// pull never fails for it.
func (s *Server) recordPull(ctx context.Context, a *state.Agent) {
	as := s.st
	now := s.now()
	s.idle.note(a.ID, now)
	if !s.pullMarks.due(a.ID, now) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullRecordTimeout)
	defer cancel()
	if err := as.RecordPull(ctx, a.ID, now); err != nil {
		s.pullMarks.undo(a.ID)
		s.logger(ctx).Warn("record last pull failed", "err", err)
	}
}

// pollWatch holds the cancel functions of the long polls waiting in this
// process, per agent, so that revoking an agent ends its waits at once
// instead of at their deadline.
type pollWatch struct {
	mu    sync.Mutex
	next  uint64
	polls map[string]map[uint64]context.CancelFunc
}

// watch registers cancel for a waiting pull of agentID and returns the
// function that unregisters it.
func (w *pollWatch) watch(agentID string, cancel context.CancelFunc) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == nil {
		w.polls = make(map[string]map[uint64]context.CancelFunc)
	}
	w.next++
	id := w.next
	if w.polls[agentID] == nil {
		w.polls[agentID] = make(map[uint64]context.CancelFunc)
	}
	w.polls[agentID][id] = cancel
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.polls[agentID], id)
		if len(w.polls[agentID]) == 0 {
			delete(w.polls, agentID)
		}
	}
}

// cancel ends every waiting pull of agentID.
func (w *pollWatch) cancel(agentID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.polls[agentID] {
		c()
	}
}

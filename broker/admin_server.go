package broker

import (
	"context"
	"time"
)

// Admin returns an Admin on the server's stores whose revocations also
// drop the server's per-agent caches (shared keys, depth metrics, pull
// marks). opts.Now defaults to the server's clock.
func (s *Server) Admin(opts AdminOptions) (*Admin, error) {
	if opts.Now == nil {
		opts.Now = s.now
	}
	next := opts.OnRevoke
	opts.OnRevoke = func(a *Agent) {
		s.shared.Forget(a.BoxPublicKey)
		s.depth.forget(a.ID)
		s.pullMarks.undo(a.ID)
		s.log.Info("agent revoked by an operator", "agent_id", a.ID, "org_id", a.OrgID)
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
func (s *Server) recordPull(ctx context.Context, a *Agent) {
	as, ok := s.st.(AdminStore)
	if !ok {
		return
	}
	now := s.now()
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

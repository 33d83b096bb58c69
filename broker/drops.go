package broker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
)

// Hash kinds of derived message ids (see Server.messageID).
const (
	KindMessageID  = "message-id"
	KindDropNotice = "drop-notice"
)

// messageID derives the inbox message id of the copy of Slack event eventID
// for agentID: a keyed hash (HashKey), so every replica computes the same id
// and nobody without the broker keys can predict one. 128 bits in hex, like
// the ids the queue chooses itself.
func (s *Server) messageID(org, eventID, agentID string) string {
	h := s.hk.sum(KindMessageID, org, eventID, agentID)
	var out [32]byte
	hex.Encode(out[:], h[:16])
	return string(out[:])
}

// recordDrop stores one dropped copy for the agent's next notice. A failure
// is logged: the drop itself is counted in the metrics either way.
func (s *Server) recordDrop(ctx context.Context, agentID string, reason protocol.DropReason, eventID string, at time.Time) {
	dr := s.st
	if len(eventID) > maxEventIDLength {
		eventID = ""
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
	defer cancel()
	if err := dr.RecordDrop(cctx, agentID, string(reason), eventID, at); err != nil {
		s.logger(ctx).Error("recording a dropped copy failed; the agent's events_dropped notice will miss it",
			"agent_id", agentID, "reason", reason, "err", err)
	}
}

// flushDrops queues the agent's events_dropped notice, if there is one and
// the inbox has room, and forgets the drops it covers once it is queued.
// Called on every pull and after every ack that made room; errors only
// delay the notice to a later call.
func (s *Server) flushDrops(ctx context.Context, a *state.Agent) {
	dr := s.st
	p, ok, err := dr.TakeDrops(ctx, a.ID)
	if err != nil {
		s.logger(ctx).Warn("reading dropped-copy records failed", "err", err)
		return
	}
	if !ok {
		return
	}
	if err := s.queueDropNotice(ctx, a, p); err != nil {
		switch {
		case errors.Is(err, queue.ErrInboxFull):
			s.logger(ctx).Debug("events_dropped notice waits for room in the inbox", "count", p.Notice.Count)
		case errors.Is(err, errSealFailed):
			// The agent's key cannot be sealed to (see fanOut): it can
			// receive nothing, this notice included.
			s.logger(ctx).Debug("events_dropped notice cannot be sealed to the agent's key", "count", p.Notice.Count)
		default:
			s.logger(ctx).Warn("queueing the events_dropped notice failed", "err", err)
		}
		return
	}
	if err := dr.ConfirmDrops(ctx, a.ID, p.Token); err != nil {
		// Queued; the next pull queues it again under the same id, which
		// is a no-op.
		s.logger(ctx).Warn("confirming the events_dropped notice failed", "err", err)
		return
	}
	s.m.dropNotices.Inc()
	s.logger(ctx).Info("events_dropped notice queued", "count", p.Notice.Count)
}

// queueDropNotice seals the notice to the agent and stores it under an id
// derived from its token.
func (s *Server) queueDropNotice(ctx context.Context, a *state.Agent, p state.PendingDrops) error {
	payload, err := json.Marshal(p.Notice)
	if err != nil {
		return fmt.Errorf("encode notice: %w", err)
	}
	ts := s.now().Unix()
	env := protocol.Envelope{Source: protocol.SourceSystem, Type: protocol.TypeEventsDropped, BrokerTimestamp: ts, Payload: payload}
	plain := env.Plaintext()
	defer crypto.Wipe(plain)
	msg, err := protocol.SealEnvelope(plain, a.OrgID, "", ts, a.BoxPublicKey, s.keys.Signing)
	if err != nil {
		return fmt.Errorf("%w: notice: %w", errSealFailed, err)
	}
	body := s.stored(&msg)
	id := s.hk.Hash(KindDropNotice, a.ID+"\x00"+p.Token).String()[:32]
	if _, err := s.q.EnqueueID(ctx, a.ID, id, body); err != nil {
		return fmt.Errorf("enqueue notice: %w", err)
	}
	s.depth.track(a.ID, a.OrgID)
	return nil
}

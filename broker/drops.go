package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
)

// Hash kinds of derived message ids (see Server.messageID).
const (
	KindMessageID  = "message-id"
	KindDropNotice = "drop-notice"
)

// DropRecordTTL is how long drop records of an agent that never pulls are
// kept (every RecordDrop extends it).
const DropRecordTTL = 30 * 24 * time.Hour

// DropRecorder keeps, per agent, the copies of Slack events dropped for it
// (inbox full, too large, sealing failure) until an events_dropped notice
// about them is durably queued. Records hold counts, times and Slack event
// ids, never message content. Both State implementations provide it
// (Redis for replicas, bbolt for the embedded mode).
//
// The protocol is take-then-confirm: TakeDrops moves everything recorded so
// far into one pending notice with a fresh token (or returns the pending
// notice again when an earlier one was never confirmed); the caller queues
// the notice under an id derived from the token, which makes queueing it
// twice harmless, and then calls ConfirmDrops. Drops recorded in between
// go into the next notice. A crash between the two steps loses nothing.
type DropRecorder interface {
	// RecordDrop counts one copy dropped for agentID for reason (the wire
	// name of a protocol.DropReason: inbox_full, too_large, seal_failed) at
	// at; eventID may be empty.
	RecordDrop(ctx context.Context, agentID, reason, eventID string, at time.Time) error
	// TakeDrops returns the agent's pending notice, creating it from the
	// recorded drops when there is none; ok is false when nothing is
	// recorded or pending.
	TakeDrops(ctx context.Context, agentID string) (p PendingDrops, ok bool, err error)
	// ConfirmDrops deletes the pending notice with token (a no-op when it
	// is no longer pending).
	ConfirmDrops(ctx context.Context, agentID, token string) error
}

// PendingDrops is a notice taken by TakeDrops and not yet confirmed.
type PendingDrops struct {
	Token  string
	Notice protocol.DropNotice
}

// dropRecord is the stored form of an agent's drops (both states).
type dropRecord struct {
	Count     int            `json:"count"`
	Reasons   map[string]int `json:"reasons"`
	First     int64          `json:"first"`
	Last      int64          `json:"last"`
	EventIDs  []string       `json:"event_ids"`
	Truncated bool           `json:"truncated"`
}

// add counts one drop.
func (r *dropRecord) add(reason, eventID string, at int64) {
	if r.Reasons == nil {
		r.Reasons = map[string]int{}
	}
	if r.Count == 0 || at < r.First {
		r.First = at
	}
	if at > r.Last {
		r.Last = at
	}
	r.Count++
	r.Reasons[reason]++
	if eventID == "" {
		return
	}
	if len(r.EventIDs) < protocol.MaxDropNoticeEventIDs {
		r.EventIDs = append(r.EventIDs, eventID)
	} else {
		r.Truncated = true
	}
}

// notice converts the record into the wire payload.
func (r *dropRecord) notice() protocol.DropNotice {
	n := protocol.DropNotice{Count: r.Count, Reasons: map[protocol.DropReason]int{}, FirstDroppedAt: r.First,
		LastDroppedAt: r.Last, EventIDs: []string{}, EventIDsTruncated: r.Truncated}
	for k, v := range r.Reasons {
		if v > 0 {
			n.Reasons[protocol.DropReason(k)] = v
		}
	}
	for _, id := range r.EventIDs {
		if id != "" {
			n.EventIDs = append(n.EventIDs, id)
		}
	}
	return n
}

// messageID derives the inbox message id of the copy of Slack event eventID
// for agentID: a keyed hash (HashKey), so every replica computes the same id
// and nobody without the broker keys can predict one. 128 bits in hex, like
// the ids the queue chooses itself.
func (s *Server) messageID(org, eventID, agentID string) string {
	return s.hk.Hash(KindMessageID, org+"\x00"+eventID+"\x00"+agentID).String()[:32]
}

// recordDrop stores one dropped copy for the agent's next notice. A failure
// is logged: the drop itself is counted in the metrics either way.
func (s *Server) recordDrop(ctx context.Context, agentID string, reason protocol.DropReason, eventID string, at time.Time) {
	dr, ok := s.st.(DropRecorder)
	if !ok {
		return
	}
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
func (s *Server) flushDrops(ctx context.Context, a *Agent) {
	dr, ok := s.st.(DropRecorder)
	if !ok {
		return
	}
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
func (s *Server) queueDropNotice(ctx context.Context, a *Agent, p PendingDrops) error {
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
	body := protocol.Stored(&msg)
	id := s.hk.Hash(KindDropNotice, a.ID+"\x00"+p.Token).String()[:32]
	if _, err := s.q.EnqueueID(ctx, a.ID, id, body); err != nil {
		return fmt.Errorf("enqueue notice: %w", err)
	}
	s.depth.track(a.ID, a.OrgID)
	return nil
}

package state

import (
	"context"
	"time"

	"github.com/sealrelay/sealrelay/protocol"
)

// Drops keeps, per agent, the copies of Slack events dropped for it
// (inbox full, too large, sealing failure) until an events_dropped notice
// about them is durably queued. Records hold counts, times and Slack event
// ids, never message content.
//
// The protocol is take-then-confirm: TakeDrops moves everything recorded so
// far into one pending notice with a fresh token (or returns the pending
// notice again when an earlier one was never confirmed); the caller queues
// the notice under an id derived from the token, which makes queueing it
// twice harmless, and then calls ConfirmDrops. Drops recorded in between
// go into the next notice. A crash between the two steps loses nothing.
type Drops interface {
	// RecordDrop counts one copy dropped for agentID for reason (one of
	// protocol.DropInboxFull, DropTooLarge, DropSealFailed) at at; eventID
	// may be empty.
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

// DropRecord is the stored form of an agent's drops (both engines).
type DropRecord struct {
	Count     int            `json:"count"`
	Reasons   map[string]int `json:"reasons"`
	First     int64          `json:"first"`
	Last      int64          `json:"last"`
	EventIDs  []string       `json:"event_ids"`
	Truncated bool           `json:"truncated"`
}

// Add counts one drop.
func (r *DropRecord) Add(reason, eventID string, at int64) {
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

// Notice converts the record into the wire payload.
func (r *DropRecord) Notice() protocol.DropNotice {
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

package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// TypeEventsDropped is the type of the system envelope a sealrelay broker
// queues to tell an agent that copies of Slack events meant for it were
// dropped (an extension; Baudbot bridges ack it as an unknown system
// message). Its payload is a DropNotice.
const TypeEventsDropped = "events_dropped"

// DropReason says why a copy meant for an agent was dropped: a key of
// DropNotice.Reasons. Brokers may add reasons; a reason a bridge does not
// know is still valid (see Known).
type DropReason string

// Drop reasons counted in DropNotice.Reasons.
const (
	// DropInboxFull: the agent's inbox was at its capacity.
	DropInboxFull DropReason = "inbox_full"
	// DropTooLarge: the sealed copy exceeded the inbox's message limit.
	DropTooLarge DropReason = "too_large"
	// DropSealFailed: the agent's stored key cannot be sealed to.
	DropSealFailed DropReason = "seal_failed"
	// DropAgentIdle: fan-out to the agent was paused because it had not
	// pulled for the broker's idle threshold (sealrelay extension,
	// docs/protocol.md §8.1).
	DropAgentIdle DropReason = "agent_idle"
)

// maxDropReasonLength bounds a reason name on the wire.
const maxDropReasonLength = 64

// Known reports whether r is one of the reasons this package defines.
func (r DropReason) Known() bool {
	switch r {
	case DropInboxFull, DropTooLarge, DropSealFailed, DropAgentIdle:
		return true
	}
	return false
}

// valid reports whether r is a well-formed reason name: 1–64 bytes of
// [a-z0-9_], starting with a letter.
func (r DropReason) valid() bool {
	if len(r) == 0 || len(r) > maxDropReasonLength || r[0] < 'a' || r[0] > 'z' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// MaxDropNoticeEventIDs bounds DropNotice.EventIDs.
const MaxDropNoticeEventIDs = 100

// maxDropNoticeEventIDLength bounds one id in DropNotice.EventIDs (the
// broker does not record longer Slack event ids).
const maxDropNoticeEventIDLength = 256

// DropNotice is the payload of an events_dropped system envelope: how many
// copies were dropped for this agent since the last notice, why, when, and
// (up to MaxDropNoticeEventIDs, in drop order) which Slack event ids.
type DropNotice struct {
	Count             int                `json:"count"`
	Reasons           map[DropReason]int `json:"reasons"`
	FirstDroppedAt    int64              `json:"first_dropped_at"`
	LastDroppedAt     int64              `json:"last_dropped_at"`
	EventIDs          []string           `json:"event_ids"`
	EventIDsTruncated bool               `json:"event_ids_truncated"`
}

// ErrDropNoticeMalformed is returned by ParseDropNotice.
var ErrDropNoticeMalformed = errors.New("events_dropped notice: malformed payload")

// ParseDropNotice parses and validates the payload of an events_dropped
// envelope: a JSON object whose count and reason counts are not negative,
// whose reason names are well formed (1–64 bytes of [a-z0-9_]; unknown
// names are kept), with at most MaxDropNoticeEventIDs non-empty event ids
// of at most 256 bytes. Errors name the field, never its content.
func ParseDropNotice(payload []byte) (DropNotice, error) {
	var n DropNotice
	if err := json.Unmarshal(payload, &n); err != nil {
		return DropNotice{}, fmt.Errorf("%w: %s", ErrDropNoticeMalformed, jsonErrorKind(err))
	}
	if n.Count < 0 {
		return DropNotice{}, fmt.Errorf("%w: count is negative", ErrDropNoticeMalformed)
	}
	for r, c := range n.Reasons {
		if !r.valid() {
			return DropNotice{}, fmt.Errorf("%w: a reason name is not 1-%d bytes of [a-z0-9_]", ErrDropNoticeMalformed, maxDropReasonLength)
		}
		if c < 0 {
			return DropNotice{}, fmt.Errorf("%w: reason %s has a negative count", ErrDropNoticeMalformed, r)
		}
	}
	if len(n.EventIDs) > MaxDropNoticeEventIDs {
		return DropNotice{}, fmt.Errorf("%w: more than %d event_ids", ErrDropNoticeMalformed, MaxDropNoticeEventIDs)
	}
	for _, id := range n.EventIDs {
		if id == "" || len(id) > maxDropNoticeEventIDLength {
			return DropNotice{}, fmt.Errorf("%w: an event id is empty or longer than %d bytes", ErrDropNoticeMalformed, maxDropNoticeEventIDLength)
		}
	}
	return n, nil
}

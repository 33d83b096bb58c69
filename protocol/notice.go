package protocol

// TypeEventsDropped is the type of the system envelope a sealrelay broker
// queues to tell an agent that copies of Slack events meant for it were
// dropped (an extension; Baudbot bridges ack it as an unknown system
// message). Its payload is a DropNotice.
const TypeEventsDropped = "events_dropped"

// Drop reasons counted in DropNotice.Reasons.
const (
	DropInboxFull  = "inbox_full"
	DropTooLarge   = "too_large"
	DropSealFailed = "seal_failed"
)

// MaxDropNoticeEventIDs bounds DropNotice.EventIDs.
const MaxDropNoticeEventIDs = 100

// DropNotice is the payload of an events_dropped system envelope: how many
// copies were dropped for this agent since the last notice, why, when, and
// (up to MaxDropNoticeEventIDs, in drop order) which Slack event ids.
type DropNotice struct {
	Count             int            `json:"count"`
	Reasons           map[string]int `json:"reasons"`
	FirstDroppedAt    int64          `json:"first_dropped_at"`
	LastDroppedAt     int64          `json:"last_dropped_at"`
	EventIDs          []string       `json:"event_ids"`
	EventIDsTruncated bool           `json:"event_ids_truncated"`
}

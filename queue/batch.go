package queue

import "context"

// Item is one message of an EnqueueIDs call.
type Item struct {
	// Inbox is the inbox to append to.
	Inbox string
	// ID is the caller's message id (see ValidateID), with EnqueueID's
	// idempotency; empty means a fresh random id, as Enqueue chooses.
	ID string
	// Body is the opaque payload.
	Body []byte
}

// Result is the outcome of one Item.
type Result struct {
	// ID is the message's id: Item.ID, or the one chosen for it.
	ID string
	// Stored reports whether a new message was stored (false with a nil
	// Err: the id was already there, as with EnqueueID).
	Stored bool
	// Err is the item's error: ErrInboxFull, ErrTooLarge, ErrInvalidInbox,
	// ErrInvalidArgument, or a store error.
	Err error
}

// BatchEnqueuer is implemented by stores that store several messages, for
// any inboxes, in one round trip (Redis) or one transaction (bbolt). Each
// item behaves exactly as its own Enqueue or EnqueueID call would: a full
// inbox fails only its items, and a repeated id is a no-op.
type BatchEnqueuer interface {
	// EnqueueIDs stores items and returns one Result per item, in order.
	EnqueueIDs(ctx context.Context, items []Item) []Result
}

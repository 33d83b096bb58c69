package queue

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

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

var (
	_ BatchEnqueuer = (*RedisStore)(nil)
	_ BatchEnqueuer = (*BoltStore)(nil)
)

// checkItem validates one item and fills in a fresh id when it has none;
// keyed reports whether the caller chose the id.
func checkItem(it Item, res *Result) (keyed bool) {
	if err := checkEnqueue(it.Inbox, it.Body); err != nil {
		res.Err = err
		return false
	}
	if it.ID == "" {
		res.ID = newID()
		return false
	}
	res.ID = it.ID
	if err := ValidateID(it.ID); err != nil {
		res.Err = err
	}
	return true
}

// EnqueueIDs implements BatchEnqueuer: the valid items go to one flusher
// as one bundle and out in one round trip (up to enqueueMaxBatch items per
// round trip; larger calls are split).
func (s *RedisStore) EnqueueIDs(ctx context.Context, items []Item) []Result {
	res := make([]Result, len(items))
	if s.isClosed() {
		for i := range res {
			res[i].Err = ErrClosed
		}
		return res
	}
	reqs := make([]*enqueueReq, 0, len(items))
	idx := make([]int, 0, len(items))
	for i, it := range items {
		keyed := checkItem(it, &res[i])
		if res[i].Err != nil {
			continue
		}
		reqs = append(reqs, s.newReq(ctx, it.Inbox, res[i].ID, keyed, it.Body, s.wakeChannel))
		idx = append(idx, i)
	}
	for start := 0; start < len(reqs); start += enqueueMaxBatch {
		end := min(start+enqueueMaxBatch, len(reqs))
		if err := s.submit(ctx, reqs[start:end]); err != nil {
			for j := start; j < len(reqs); j++ {
				res[idx[j]].Err = err
			}
			return res
		}
		for j := start; j < end; j++ {
			r := reqs[j]
			res[idx[j]].Stored, res[idx[j]].Err = r.err == nil && r.stored, r.err
		}
	}
	return res
}

// EnqueueIDs implements BatchEnqueuer: all valid items are stored in one
// bbolt transaction (joined with concurrent writers by DB.Batch) and one
// fsync.
func (s *BoltStore) EnqueueIDs(ctx context.Context, items []Item) []Result {
	res := make([]Result, len(items))
	type op struct {
		i            int
		keyed        bool
		stored, full bool
	}
	ops := make([]op, 0, len(items))
	for i, it := range items {
		keyed := checkItem(it, &res[i])
		if res[i].Err == nil {
			ops = append(ops, op{i: i, keyed: keyed})
		}
	}
	if len(ops) == 0 {
		return res
	}
	fail := func(err error) []Result {
		for _, o := range ops {
			res[o.i].Err = err
		}
		return res
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if s.isClosed() {
		return fail(ErrClosed)
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		for k := range ops {
			o := &ops[k]
			it := items[o.i]
			var err error
			if o.stored, o.full, err = s.putTx(tx, it.Inbox, res[o.i].ID, o.keyed, it.Body); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("queue: enqueue batch of %d: %w", len(ops), s.closedErr(err)))
	}
	for _, o := range ops {
		inbox := items[o.i].Inbox
		switch {
		case o.full:
			res[o.i].Err = fmt.Errorf("%w: %s holds %d messages", ErrInboxFull, inbox, s.opts.Capacity)
		case o.stored:
			res[o.i].Stored = true
			s.hub.wake(inbox)
		}
	}
	return res
}

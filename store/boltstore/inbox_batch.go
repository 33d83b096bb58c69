package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/internal/inboxutil"
)

var _ queue.BatchEnqueuer = (*Inbox)(nil)

// EnqueueIDs implements BatchEnqueuer: all valid items are stored in one
// bbolt transaction (joined with concurrent writers by DB.Batch) and one
// fsync.
func (s *Inbox) EnqueueIDs(ctx context.Context, items []queue.Item) []queue.Result {
	res := make([]queue.Result, len(items))
	type op struct {
		i            int
		keyed        bool
		stored, full bool
	}
	ops := make([]op, 0, len(items))
	for i, it := range items {
		keyed := inboxutil.CheckItem(it, &res[i])
		if res[i].Err == nil {
			ops = append(ops, op{i: i, keyed: keyed})
		}
	}
	if len(ops) == 0 {
		return res
	}
	fail := func(err error) []queue.Result {
		for _, o := range ops {
			res[o.i].Err = err
		}
		return res
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if s.isClosed() {
		return fail(queue.ErrClosed)
	}
	err := s.gc.update(func(tx *bolt.Tx) error {
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
			res[o.i].Err = fmt.Errorf("%w: %s holds %d messages", queue.ErrInboxFull, inbox, s.opts.Capacity)
		case o.stored:
			res[o.i].Stored = true
			s.hub.Wake(inbox)
		}
	}
	return res
}

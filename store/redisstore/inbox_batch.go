package redisstore

import (
	"context"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/internal/inboxutil"
)

var _ queue.BatchEnqueuer = (*Inbox)(nil)

// EnqueueIDs implements BatchEnqueuer: the valid items go to one flusher
// as one bundle and out in one round trip (up to enqueueMaxBatch items per
// round trip; larger calls are split).
func (s *Inbox) EnqueueIDs(ctx context.Context, items []queue.Item) []queue.Result {
	res := make([]queue.Result, len(items))
	if s.isClosed() {
		for i := range res {
			res[i].Err = queue.ErrClosed
		}
		return res
	}
	reqs := make([]*enqueueReq, 0, len(items))
	idx := make([]int, 0, len(items))
	for i, it := range items {
		keyed := inboxutil.CheckItem(it, &res[i])
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

package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by the State calls the coalescer serves (event
// claims and completions, nonces, one-time signatures) once the State is
// closed.
var ErrClosed = errors.New("redisstore: state closed")

// A coalescer is group commit for the State's small per-event commands: the
// event claim (with the org's agent list), its completion or release, and
// the replay records of nonces and one-time signatures. Each webhook used to
// cost Redis a round trip per call; with many concurrent webhooks, the
// per-round-trip work (a read and a write syscall on each side, command
// dispatch in go-redis, an event-loop turn in Redis) was most of the CPU
// both processes spent on them.
//
// Calls queue their commands and wait. A call that finds fewer than
// coalesceMaxInFlight batches in flight sends everything queued (its own
// commands included, up to coalesceMaxBatch calls) as one non-transactional
// pipeline itself, so a lone call goes out at once, on its own goroutine,
// as before. While batches are in flight new calls only queue; when a batch's
// answer arrives, whatever queued meanwhile goes out together as the next
// batch (on a goroutine that lives while the queue keeps refilling). The
// batch size therefore follows the load with no timer and no added latency:
// self-clocking, as in a database's group commit.
//
// Each call reads its own commands' replies, so per-call results and errors
// are exactly those of separate calls (a Redis error answers only the
// command that caused it); an error of the connection fails every command
// of its batch, which is what a lone call would have seen. A pipeline is not
// a transaction: nothing about atomicity changes, since every call was one
// atomic command or an independent pair before. On Redis Cluster go-redis
// splits a pipeline by slot; the state keys share one hash tag (keys.go),
// so a batch still goes to one node.
//
// A caller whose ctx ends gets ctx's error at once: while its call is
// queued its commands are then not sent; once its batch is on the wire
// their effect is unknown to it, as for any command whose ctx ends
// mid-flight. A batch is sent with the latest deadline of its callers
// (at most coalesceTimeout), so a Redis that stops answering is given up
// on when the last of them leaves (the webhook's 503 deadline holds). Close fails the
// queued calls with ErrClosed, waits for the batches in flight, and makes
// every later call fail with ErrClosed. No goroutine outlives an empty
// queue, so a State that is never closed leaks nothing.
type coalescer struct {
	rdb redis.UniversalClient

	mu       sync.Mutex
	queue    []*coalesced
	inFlight int  // batches being sent
	closed   bool // set by close
	batches  sync.WaitGroup

	// afterQueue, when set (only by tests, export_test.go), is called with
	// mu held each time a call joins the queue.
	afterQueue func()
}

// coalesced is one queued call.
type coalesced struct {
	ctx context.Context
	// add appends the call's commands to the batch's pipeline; the call
	// reads their replies once done is closed.
	add  func(redis.Pipeliner)
	err  error // set before done closes: why the commands were not sent
	done chan struct{}
	// taken (mu) marks a call taken for sending; dropped (mu) one whose
	// caller left while it was queued.
	taken, dropped bool
}

const (
	// coalesceMaxInFlight bounds the batches sent at once. Two let one
	// batch fill while another is on the wire without letting the batches
	// shrink to single calls under load.
	coalesceMaxInFlight = 2
	// coalesceMaxBatch bounds the calls per batch (at most two commands each).
	coalesceMaxBatch = 128
	// coalesceTimeout bounds a batch in case the client has no timeouts.
	coalesceTimeout = 30 * time.Second
)

func newCoalescer(rdb redis.UniversalClient) *coalescer {
	return &coalescer{rdb: rdb}
}

// do queues a call whose commands add appends to a pipeline and returns
// once the batch holding them was answered (nil: the caller reads its
// commands' results), or with ctx's error if ctx ended before the batch was
// taken for sending, or ErrClosed.
func (c *coalescer) do(ctx context.Context, add func(redis.Pipeliner)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	call := &coalesced{ctx: ctx, add: add, done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, call)
	if c.afterQueue != nil {
		c.afterQueue()
	}
	var batch []*coalesced
	if c.inFlight < coalesceMaxInFlight {
		c.inFlight++
		c.batches.Add(1)
		batch = c.takeLocked()
	}
	c.mu.Unlock()
	if batch != nil {
		// The batch goes out from a goroutine of its own (which then sends
		// whatever queued meanwhile), so that this caller, like every
		// other, can leave when its ctx ends even while Redis is silent.
		go c.run(batch)
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !call.taken {
		call.dropped = true
	}
	c.mu.Unlock()
	// Queued: never sent. Taken: it may be on the wire; like a single
	// command whose ctx ends mid-flight, its effect is then unknown to the
	// caller, who never reads its replies.
	return ctx.Err()
}

// takeLocked removes up to coalesceMaxBatch live calls from the queue and
// marks them taken.
func (c *coalescer) takeLocked() []*coalesced {
	var batch []*coalesced
	i := 0
	for ; i < len(c.queue) && len(batch) < coalesceMaxBatch; i++ {
		call := c.queue[i]
		if call.dropped {
			continue
		}
		call.taken = true
		batch = append(batch, call)
	}
	n := copy(c.queue, c.queue[i:])
	clear(c.queue[n:])
	c.queue = c.queue[:n]
	return batch
}

// next takes the next batch for a sender that finished one, or releases its
// slot when the queue is empty (then it returns nil).
func (c *coalescer) next() []*coalesced {
	c.mu.Lock()
	defer c.mu.Unlock()
	if batch := c.takeLocked(); len(batch) > 0 {
		return batch
	}
	c.inFlight--
	c.batches.Done()
	return nil
}

// run sends batches until the queue is empty.
func (c *coalescer) run(batch []*coalesced) {
	for batch != nil {
		c.send(batch)
		batch = c.next()
	}
}

// send sends one batch as a pipeline and completes its calls. Calls whose
// ctx has ended are completed with its error and not sent.
func (c *coalescer) send(batch []*coalesced) {
	live := batch[:0] // filtered in place
	p := c.rdb.Pipeline()
	for _, call := range batch {
		if err := call.ctx.Err(); err != nil {
			call.err = err
			close(call.done)
			continue
		}
		call.add(p)
		live = append(live, call)
	}
	if len(live) > 0 {
		// The batch lives as long as its most patient caller wants it
		// (at most coalesceTimeout): once every caller has left, go-redis
		// stops waiting and retrying too.
		deadline := time.Now().Add(coalesceTimeout)
		latest := time.Time{}
		for _, call := range live {
			d, ok := call.ctx.Deadline()
			if !ok {
				latest = deadline
				break
			}
			if d.After(latest) {
				latest = d
			}
		}
		if latest.After(deadline) {
			latest = deadline
		}
		ctx, cancel := context.WithDeadline(context.Background(), latest)
		// Every command holds its own reply or error (go-redis stamps a
		// connection error on all of them); Exec's is only the first.
		_, _ = p.Exec(ctx)
		cancel()
	}
	for _, call := range live {
		close(call.done)
	}
}

// close fails the queued calls, waits for the batches in flight and makes
// later calls fail with ErrClosed.
func (c *coalescer) close() {
	c.mu.Lock()
	c.closed = true
	for _, call := range c.queue {
		if !call.dropped {
			call.taken = true
			call.err = ErrClosed
			close(call.done)
		}
	}
	clear(c.queue)
	c.queue = nil
	c.mu.Unlock()
	c.batches.Wait()
}

package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds how many calls one group commit carries.
const maxGroup = 1000

// errLead tells a queued call that it now leads the group commit.
var errLead = errors.New("boltstore: lead the group commit")

// groupCommit joins concurrent write transactions into one bbolt commit
// (one fsync), like DB.Batch, but self-clocking instead of timer-driven:
// when no commit is in flight a call commits at once, alone; the calls
// that arrive while a commit is in flight are committed together as soon
// as it returns. Under load the group grows with the commit's own cost,
// and a lone writer never waits for company. Every call still returns only
// after the commit that carried it was fsynced.
//
// As with DB.Batch, a function may run more than once (when another in its
// group fails, each is retried in a transaction of its own), so it must
// reset what it reports on every run.
type groupCommit struct {
	db     *bolt.DB
	linger time.Duration

	mu      sync.Mutex
	queue   []*gcCall
	running bool

	commits atomic.Int64 // write transactions committed
}

type gcCall struct {
	fn func(*bolt.Tx) error
	ch chan error // errLead, then the result
}

// update runs fn in a write transaction shared with the concurrent calls
// and returns once that transaction is committed (or failed).
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	c := &gcCall{fn: fn, ch: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.running {
		g.mu.Unlock()
		if err := <-c.ch; err != errLead {
			return err
		}
	} else {
		g.running = true
		g.mu.Unlock()
	}
	// Leading: commit what is queued (this call included), then hand the
	// lead to the first call that queued meanwhile.
	if g.linger > 0 {
		time.Sleep(g.linger)
	}
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()
	g.run(group)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].ch <- errLead
	} else {
		g.queue = nil
		g.running = false
	}
	g.mu.Unlock()
	return <-c.ch
}

// run commits group in one transaction; if that fails, each call gets a
// transaction of its own, so one call's error is not another's.
func (g *groupCommit) run(group []*gcCall) {
	err := g.db.Update(func(tx *bolt.Tx) error {
		for _, c := range group {
			if err := safeCall(c.fn, tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		g.commits.Add(1)
		for _, c := range group {
			c.ch <- nil
		}
		return
	}
	if len(group) == 1 {
		group[0].ch <- err
		return
	}
	for _, c := range group {
		err := g.db.Update(func(tx *bolt.Tx) error { return safeCall(c.fn, tx) })
		if err == nil {
			g.commits.Add(1)
		}
		c.ch <- err
	}
}

// safeCall runs fn, turning a panic into an error so that a group's other
// calls are not left waiting.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("boltstore: transaction panicked: %v", p)
		}
	}()
	return fn(tx)
}

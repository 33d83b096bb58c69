package redisstore

import (
	"time"

	"github.com/sealrelay/sealrelay/state"
)

// advanceLimiter moves the clock the rate-limit buckets of st read (the
// Redis server's) forward by d, for statetest.
func advanceLimiter(st state.Store, d time.Duration) {
	st.(*State).clockOffset.Add(d.Milliseconds())
}

// waiting reports how many Pulls of this process wait on inbox.
func (s *Inbox) waiting(inbox string) int { return s.hub.Count(inbox) }

// onQueue makes st's coalescer call f (its lock held) each time a call
// joins its queue.
func (s *State) onQueue(f func()) {
	s.co.mu.Lock()
	defer s.co.mu.Unlock()
	s.co.afterQueue = f
}

// Package boltstore is sealrelay's embedded storage engine, for a single
// broker process: the agents' inboxes (Inbox, a queue.Store, in
// queue.db) and the broker's state (State, a state.Store, in state.db),
// each a bbolt file in the data directory. Held requests meet in memory
// (state.MemHolds) and rate-limit buckets are golang.org/x/time/rate
// limiters. Nothing else in the broker talks to bbolt.
package boltstore

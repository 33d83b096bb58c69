// Package boltstore is sealrelay's embedded storage engine: the broker's
// state (state.Store) in a bbolt file, for a single broker process. Held
// requests meet in memory (state.MemHolds) and rate-limit buckets are
// golang.org/x/time/rate limiters.
package boltstore

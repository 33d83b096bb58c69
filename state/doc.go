// Package state holds the broker's persisted records (installations,
// agents, hashed tokens, one-time values, rate-limit buckets, dropped-copy
// records, held requests) and the small role interfaces through which the
// broker reads and writes them.
//
// The broker consumes the roles (Installations, Agents, Events, OneTime,
// Limiter, Drops, HoldHubs); an engine implements all of them as one Store:
// store/redisstore for any number of broker replicas sharing a Redis (or
// Redis Cluster), store/boltstore for a single process with an embedded
// bbolt file. Both pass the conformance suite in state/statetest.
//
// This package knows nothing of Redis, bbolt or the broker: it defines what
// a record is, how it is encoded (one encoding per record, see Agent and
// TokenHash), and which operations must be atomic across replicas.
package state

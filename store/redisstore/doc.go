// Package redisstore is sealrelay's Redis storage engine: the broker's
// state (state.Store: installations, agents, one-time values, event
// claims, drop records, rate-limit buckets, held requests) for any number
// of broker replicas sharing one Redis, Sentinel group or Redis Cluster.
// It is the only package besides the inbox engine that talks to Redis for
// the broker.
package redisstore

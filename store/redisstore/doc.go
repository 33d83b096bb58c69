// Package redisstore is sealrelay's Redis storage engine, for any number of
// broker replicas sharing one Redis, Sentinel group or Redis Cluster: the
// agents' inboxes (Inbox, a queue.Store) and the broker's state (State, a
// state.Store: installations, agents, one-time values, event claims, drop
// records, rate-limit buckets, held requests), with their Lua scripts and
// sweepers. Nothing else in the broker talks to Redis.
package redisstore

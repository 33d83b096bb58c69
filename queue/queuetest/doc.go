// Package queuetest is the conformance suite of queue.Store engines, in
// the style of river's riverdrivertest: an engine's tests call Run with a
// Harness that opens fresh stores, and its benchmarks use BenchEnqueue,
// BenchPullAck and BenchWakeUp. store/redisstore runs it against a Redis
// and a 3-node Redis Cluster, store/boltstore against bbolt.
package queuetest

// Package statetest is the conformance suite of state.Store engines, in
// the style of river's riverdrivertest: an engine's tests call Run (and
// RunHoldHub for its hold hub) with a constructor of fresh, empty stores.
// store/redisstore runs it against a Redis and a 3-node Redis Cluster,
// store/boltstore against bbolt.
package statetest

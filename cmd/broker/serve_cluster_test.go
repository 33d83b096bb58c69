package main

import (
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

// TestServeRedisCluster: two `broker serve` replicas on a private 3-node
// Redis Cluster (--redis-cluster-addrs) carry install → register → event →
// pull → ack → send, every step on the other replica than the one before.
// Any multi-key script or transaction crossing slots fails here with
// CROSSSLOT.
func TestServeRedisCluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	fake, fs := newE2EFake(t)
	env := dropEmpty(e2eEnv(t, fs))
	env["SEALRELAY_REDIS_CLUSTER_ADDRS"] = addrs[0] + "," + addrs[1] + "," + addrs[2]
	a := startServe(t, nil, env)
	b := startServe(t, nil, env)
	if a.cfg.RedisCluster == nil || a.cfg.RedisOptions != nil {
		t.Fatal("--redis-cluster-addrs did not configure a cluster client")
	}
	checkEndpoints(t, a)
	e2eFlow(t, fake, a, b)

	// `broker keys rotate` reads the same cluster settings and re-wraps the
	// installation's bot token there.
	out, err := rotate(t, nil, env)
	if err != nil || !strings.Contains(out, "Re-wrapped 1 stored secrets under master key version 2") {
		t.Fatalf("keys rotate on the cluster: %q, %v", out, err)
	}
}

// TestServeRedisSentinel: two replicas reach their master through Redis
// Sentinel (--redis-sentinel-master / --redis-sentinel-addrs) and carry the
// same flow.
func TestServeRedisSentinel(t *testing.T) {
	t.Parallel()
	sentinel := testredis.StartSentinel(t, "srmaster")
	fake, fs := newE2EFake(t)
	env := dropEmpty(e2eEnv(t, fs))
	env["SEALRELAY_REDIS_SENTINEL_MASTER"] = "srmaster"
	env["SEALRELAY_REDIS_SENTINEL_ADDRS"] = sentinel
	a := startServe(t, nil, env)
	b := startServe(t, nil, env)
	if a.cfg.RedisFailover == nil {
		t.Fatal("--redis-sentinel-master did not configure a failover client")
	}
	e2eFlow(t, fake, a, b)
}

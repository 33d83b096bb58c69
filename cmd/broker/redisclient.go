package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// newRedisClient builds the client of the configured Redis deployment —
// single node (--redis-url), Redis Cluster (--redis-cluster-addrs) or a
// Sentinel-managed master (--redis-sentinel-master) — with the limits of
// redistimeouts.go, and checks that it answers a PING. where names the
// deployment (addresses only, never credentials) for logs and errors.
func newRedisClient(ctx context.Context, cfg *config) (rdb redis.UniversalClient, where string, err error) {
	var fix string
	switch {
	case cfg.RedisCluster != nil:
		applyClusterTimeouts(cfg.RedisCluster)
		rdb = redis.NewClusterClient(cfg.RedisCluster)
		where = "redis cluster " + strings.Join(cfg.RedisCluster.Addrs, ",")
		fix = "--redis-cluster-addrs / SEALRELAY_REDIS_CLUSTER_ADDRS"
	case cfg.RedisFailover != nil:
		applyFailoverTimeouts(cfg.RedisFailover)
		rdb = redis.NewFailoverClient(cfg.RedisFailover)
		where = fmt.Sprintf("redis master %q via sentinels %s", cfg.RedisFailover.MasterName, strings.Join(cfg.RedisFailover.SentinelAddrs, ","))
		fix = "--redis-sentinel-master / --redis-sentinel-addrs"
	case cfg.RedisOptions != nil:
		applyRedisTimeouts(cfg.RedisOptions)
		rdb = redis.NewClient(cfg.RedisOptions)
		where = "redis at " + cfg.RedisOptions.Addr
		fix = "--redis-url / SEALRELAY_REDIS_URL"
	default:
		return nil, "", fmt.Errorf("no Redis configured")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, where, fmt.Errorf("%s is unreachable: %v (check %s)", where, err, fix)
	}
	return rdb, where, nil
}

package main

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis client limits of `broker serve`, chosen so that a Redis that stops
// answering (frozen, partitioned, overloaded) fails a call within about a
// second instead of holding a Slack webhook or a readiness probe: the
// broker's own deadlines (broker.Config.WebhookTimeout, broker.ReadyzTimeout)
// are then honoured because the client obeys context deadlines. Values set
// in the Redis URL (?dial_timeout=, read_timeout=, write_timeout=,
// pool_timeout=, max_retries=) take precedence.
const (
	redisDialTimeout  = time.Second
	redisReadTimeout  = time.Second
	redisWriteTimeout = time.Second
	redisPoolTimeout  = time.Second
	redisMaxRetries   = 1
)

// applyRedisTimeouts fills the limits above into o where the URL left them
// unset, and makes the client respect context deadlines.
func applyRedisTimeouts(o *redis.Options) {
	fillRedisLimits(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
}

// applyClusterTimeouts is applyRedisTimeouts for a Redis Cluster client
// (the limits apply to every node's connection).
func applyClusterTimeouts(o *redis.ClusterOptions) {
	fillRedisLimits(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
}

// applyFailoverTimeouts is applyRedisTimeouts for a Sentinel-managed
// master.
func applyFailoverTimeouts(o *redis.FailoverOptions) {
	fillRedisLimits(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.ContextTimeoutEnabled)
}

func fillRedisLimits(dial, read, write, pool *time.Duration, retries *int, ctxTimeout *bool) {
	for _, d := range []struct {
		p *time.Duration
		v time.Duration
	}{{dial, redisDialTimeout}, {read, redisReadTimeout}, {write, redisWriteTimeout}, {pool, redisPoolTimeout}} {
		if *d.p == 0 {
			*d.p = d.v
		}
	}
	if *retries == 0 {
		*retries = redisMaxRetries
	}
	*ctxTimeout = true
}

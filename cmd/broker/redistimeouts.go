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
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = redisReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = redisWriteTimeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = redisPoolTimeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = redisMaxRetries
	}
	o.ContextTimeoutEnabled = true
}

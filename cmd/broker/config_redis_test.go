package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLoadConfigRedisTopology: --redis-cluster-addrs, the Sentinel settings
// and --agents-per-org resolve into the config; exactly one Redis
// deployment may be named, and credentials are never echoed.
func TestLoadConfigRedisTopology(t *testing.T) {
	t.Parallel()
	pwFile := writeFile(t, "s3cret-pw\n")
	tests := []struct {
		name  string
		env   map[string]string
		check func(*config) string // for valid configurations
		want  []string             // problems, for invalid ones
	}{
		{name: "cluster", env: map[string]string{"SEALRELAY_REDIS_CLUSTER_ADDRS": "10.0.0.1:6379, 10.0.0.2:6379,[::1]:7000",
			"SEALRELAY_REDIS_USERNAME": "relay", "SEALRELAY_REDIS_PASSWORD_FILE": pwFile},
			check: func(c *config) string {
				o := c.RedisCluster
				switch {
				case o == nil || c.RedisOptions != nil || c.RedisFailover != nil:
					return "not exactly a cluster client"
				case strings.Join(o.Addrs, " ") != "10.0.0.1:6379 10.0.0.2:6379 [::1]:7000":
					return "addrs " + strings.Join(o.Addrs, " ")
				case o.Username != "relay" || o.Password != "s3cret-pw":
					return "credentials"
				case !c.usesRedis():
					return "usesRedis"
				}
				return ""
			}},
		{name: "sentinel", env: map[string]string{"SEALRELAY_REDIS_SENTINEL_MASTER": "mymaster",
			"SEALRELAY_REDIS_SENTINEL_ADDRS": "s1:26379,s2:26379", "SEALRELAY_REDIS_PASSWORD": "pw", "SEALRELAY_REDIS_SENTINEL_PASSWORD": "spw"},
			check: func(c *config) string {
				o := c.RedisFailover
				switch {
				case o == nil || c.RedisOptions != nil || c.RedisCluster != nil:
					return "not exactly a failover client"
				case o.MasterName != "mymaster" || len(o.SentinelAddrs) != 2 || o.Password != "pw" || o.SentinelPassword != "spw":
					return "options"
				}
				return ""
			}},
		{name: "embedded by default, unlimited agents", env: nil,
			check: func(c *config) string {
				if c.usesRedis() || c.AgentsPerOrg != 0 {
					return "want embedded store and no agent limit"
				}
				return ""
			}},
		{name: "agents per org 1", env: map[string]string{"SEALRELAY_AGENTS_PER_ORG": "1"},
			check: func(c *config) string {
				if c.AgentsPerOrg != 1 || brokerConfig(c).AgentsPerOrg != 1 {
					return "agents-per-org not passed on"
				}
				return ""
			}},
		{name: "url and cluster", env: map[string]string{"SEALRELAY_REDIS_URL": "redis://:hunter2@h:6379/0", "SEALRELAY_REDIS_CLUSTER_ADDRS": "h:6379"},
			want: []string{"SEALRELAY_REDIS_URL (or --redis-url / --redis-url-file / SEALRELAY_REDIS_URL_FILE) and SEALRELAY_REDIS_CLUSTER_ADDRS (or --redis-cluster-addrs) are alternatives"}},
		{name: "cluster and sentinel", env: map[string]string{"SEALRELAY_REDIS_CLUSTER_ADDRS": "h:6379", "SEALRELAY_REDIS_SENTINEL_MASTER": "m"},
			want: []string{"are alternatives (single Redis, Redis Cluster, Redis Sentinel): set exactly one"}},
		{name: "sentinel master without addrs", env: map[string]string{"SEALRELAY_REDIS_SENTINEL_MASTER": "m"},
			want: []string{"SEALRELAY_REDIS_SENTINEL_ADDRS (or --redis-sentinel-addrs) is not: list the Sentinels"}},
		{name: "sentinel addrs without master", env: map[string]string{"SEALRELAY_REDIS_SENTINEL_ADDRS": "s:26379"},
			want: []string{"SEALRELAY_REDIS_SENTINEL_MASTER (or --redis-sentinel-master) is not: name the master"}},
		{name: "bad cluster addresses", env: map[string]string{"SEALRELAY_REDIS_CLUSTER_ADDRS": "h:6379,,nohost,h:0,:6379"},
			want: []string{`"" is not a host:port`, `"nohost" is not a host:port`, `"h:0" is not a host:port`, `":6379" is not a host:port`}},
		{name: "password with url", env: map[string]string{"SEALRELAY_REDIS_URL": "redis://h:6379/0", "SEALRELAY_REDIS_PASSWORD": "hunter2"},
			want: []string{"applies to SEALRELAY_REDIS_CLUSTER_ADDRS (or --redis-cluster-addrs) or SEALRELAY_REDIS_SENTINEL_MASTER (or --redis-sentinel-master) only (with SEALRELAY_REDIS_URL"}},
		{name: "sentinel password with cluster", env: map[string]string{"SEALRELAY_REDIS_CLUSTER_ADDRS": "h:6379", "SEALRELAY_REDIS_SENTINEL_PASSWORD": "hunter2"},
			want: []string{"SEALRELAY_REDIS_SENTINEL_PASSWORD_FILE) is set but no Sentinel is configured"}},
		{name: "negative agents per org", env: map[string]string{"SEALRELAY_AGENTS_PER_ORG": "-1"},
			want: []string{`SEALRELAY_AGENTS_PER_ORG="-1" is not a whole number from 0`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := loadConfig(nil, envMap(env))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if msg := tt.check(c); msg != "" {
					t.Fatal(msg)
				}
				return
			}
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("loadConfig error = %v, want a *configError", err)
			}
			if len(ce.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ce.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ce.Problems[i], w) {
					t.Errorf("problem %d = %q\nwant it to contain %q", i, ce.Problems[i], w)
				}
			}
			for _, secret := range []string{"hunter2", "s3cret-pw"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error message leaks secret %q: %v", secret, err)
				}
			}
		})
	}
}

// TestNewRedisClientTimeouts: the broker's Redis limits apply to the
// cluster and Sentinel clients too, and an unreachable deployment is
// named (addresses only) in the error.
func TestNewRedisClientTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		opts func(*config) (dial, read, write, pool time.Duration, retries int, ctxTimeout bool)
		want string
	}{
		{"cluster", map[string]string{"SEALRELAY_REDIS_CLUSTER_ADDRS": "127.0.0.1:1", "SEALRELAY_REDIS_PASSWORD": "hunter2"},
			func(c *config) (time.Duration, time.Duration, time.Duration, time.Duration, int, bool) {
				o := c.RedisCluster
				return o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.ContextTimeoutEnabled
			}, "redis cluster 127.0.0.1:1 is unreachable"},
		{"sentinel", map[string]string{"SEALRELAY_REDIS_SENTINEL_MASTER": "m", "SEALRELAY_REDIS_SENTINEL_ADDRS": "127.0.0.1:1", "SEALRELAY_REDIS_PASSWORD": "hunter2"},
			func(c *config) (time.Duration, time.Duration, time.Duration, time.Duration, int, bool) {
				o := c.RedisFailover
				return o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.ContextTimeoutEnabled
			}, `redis master "m" via sentinels 127.0.0.1:1 is unreachable`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := loadConfig(nil, envMap(env))
			if err != nil {
				t.Fatal(err)
			}
			// A short deadline: the Sentinel client retries until it ends.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _, err = newRedisClient(ctx, c)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("newRedisClient error = %v, want it to contain %q and no password", err, tt.want)
			}
			dial, read, write, pool, retries, ctxTimeout := tt.opts(c)
			if dial != redisDialTimeout || read != redisReadTimeout || write != redisWriteTimeout ||
				pool != redisPoolTimeout || retries != redisMaxRetries || !ctxTimeout {
				t.Fatalf("limits %v %v %v %v %d %v, want the broker's", dial, read, write, pool, retries, ctxTimeout)
			}
		})
	}
}

package main

import (
	"net"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// maxRedisAddrs bounds --redis-cluster-addrs and --redis-sentinel-addrs.
const maxRedisAddrs = 64

// usesRedis reports whether any Redis deployment (single node, Cluster or
// Sentinel) is configured, as opposed to the embedded store.
func (c *config) usesRedis() bool {
	return c.RedisOptions != nil || c.RedisCluster != nil || c.RedisFailover != nil
}

// redisTopology resolves --redis-cluster-addrs, --redis-sentinel-master,
// --redis-sentinel-addrs and their credentials into c. Exactly one of
// --redis-url, --redis-cluster-addrs and --redis-sentinel-master may be set.
func (r *resolver) redisTopology(c *config) {
	urlS, urlV := r.Get("redis-url")
	clS, clV := r.Get("redis-cluster-addrs")
	smS, smV := r.Get("redis-sentinel-master")
	saS, saV := r.Get("redis-sentinel-addrs")
	userS, userV := r.Get("redis-username")
	pwS, pwV := r.Get("redis-password")
	spwS, spwV := r.Get("redis-sentinel-password")

	var modes []string
	if urlV.Text != "" {
		modes = append(modes, urlS.Names())
	}
	if clV.Text != "" {
		modes = append(modes, clS.Names())
	}
	if smV.Text != "" || saV.Text != "" {
		modes = append(modes, smS.Names())
	}
	if len(modes) > 1 {
		r.Problem("%s are alternatives (single Redis, Redis Cluster, Redis Sentinel): set exactly one", strings.Join(modes, " and "))
		return
	}
	cluster, sentinel := clV.Text != "", smV.Text != "" || saV.Text != ""
	if !cluster && !sentinel {
		for _, sv := range []struct {
			s *setting
			v value
		}{{userS, userV}, {pwS, pwV}, {spwS, spwV}} {
			if sv.v.Text != "" {
				r.Problem("%s applies to %s or %s only (with %s put the user and password in the URL: redis://user:password@host:6379/0)",
					sv.s.Names(), clS.Names(), smS.Names(), urlS.Names())
			}
		}
		return
	}
	if cluster {
		if spwV.Text != "" {
			r.Problem("%s is set but no Sentinel is configured (%s)", spwS.Names(), smS.Names())
		}
		addrs := r.redisAddrs(clS, clV)
		if addrs == nil {
			return
		}
		c.RedisCluster = &redis.ClusterOptions{Addrs: addrs, Username: userV.Text, Password: pwV.Text}
		return
	}
	switch {
	case smV.Text == "":
		r.Problem("%s is set but %s is not: name the master the Sentinels monitor (sentinel.conf `sentinel monitor NAME ...`)", saS.Names(), smS.Names())
		return
	case saV.Text == "":
		r.Problem("%s is set but %s is not: list the Sentinels as host:26379,host2:26379", smS.Names(), saS.Names())
		return
	case strings.ContainsAny(smV.Text, " \t\r\n") || len(smV.Text) > 256:
		r.Problem("%s is not a Sentinel master name: use the name from `sentinel monitor NAME ...`, without spaces", smS.Describe(smV))
		return
	}
	addrs := r.redisAddrs(saS, saV)
	if addrs == nil {
		return
	}
	c.RedisFailover = &redis.FailoverOptions{MasterName: smV.Text, SentinelAddrs: addrs,
		Username: userV.Text, Password: pwV.Text, SentinelPassword: spwV.Text}
}

// redisAddrs parses a comma-separated host:port list, reporting every bad
// entry; nil after a problem.
func (r *resolver) redisAddrs(s *setting, v value) []string {
	parts := strings.Split(v.Text, ",")
	if len(parts) > maxRedisAddrs {
		r.Problem("%s lists %d addresses: at most %d", s.Names(), len(parts), maxRedisAddrs)
		return nil
	}
	var out []string
	ok := true
	for _, p := range parts {
		p = strings.TrimSpace(p)
		host, port, err := net.SplitHostPort(p)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			r.Problem("%s: %q is not a host:port address (want e.g. 10.0.0.1:6379,10.0.0.2:6379)", s.Names(), p)
			ok = false
			continue
		}
		out = append(out, p)
	}
	if !ok {
		return nil
	}
	return out
}

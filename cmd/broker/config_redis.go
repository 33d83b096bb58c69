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
	get := func(name string) (*setting, value) {
		s := settingByName(name)
		return s, r.get(s)
	}
	urlS, urlV := get("redis-url")
	clS, clV := get("redis-cluster-addrs")
	smS, smV := get("redis-sentinel-master")
	saS, saV := get("redis-sentinel-addrs")
	userS, userV := get("redis-username")
	pwS, pwV := get("redis-password")
	spwS, spwV := get("redis-sentinel-password")

	var modes []string
	if urlV.text != "" {
		modes = append(modes, urlS.names())
	}
	if clV.text != "" {
		modes = append(modes, clS.names())
	}
	if smV.text != "" || saV.text != "" {
		modes = append(modes, smS.names())
	}
	if len(modes) > 1 {
		r.problem("%s are alternatives (single Redis, Redis Cluster, Redis Sentinel): set exactly one", strings.Join(modes, " and "))
		return
	}
	cluster, sentinel := clV.text != "", smV.text != "" || saV.text != ""
	if !cluster && !sentinel {
		for _, sv := range []struct {
			s *setting
			v value
		}{{userS, userV}, {pwS, pwV}, {spwS, spwV}} {
			if sv.v.text != "" {
				r.problem("%s applies to %s or %s only (with %s put the user and password in the URL: redis://user:password@host:6379/0)",
					sv.s.names(), clS.names(), smS.names(), urlS.names())
			}
		}
		return
	}
	if cluster {
		if spwV.text != "" {
			r.problem("%s is set but no Sentinel is configured (%s)", spwS.names(), smS.names())
		}
		addrs := r.redisAddrs(clS, clV)
		if addrs == nil {
			return
		}
		c.RedisCluster = &redis.ClusterOptions{Addrs: addrs, Username: userV.text, Password: pwV.text}
		return
	}
	switch {
	case smV.text == "":
		r.problem("%s is set but %s is not: name the master the Sentinels monitor (sentinel.conf `sentinel monitor NAME ...`)", saS.names(), smS.names())
		return
	case saV.text == "":
		r.problem("%s is set but %s is not: list the Sentinels as host:26379,host2:26379", smS.names(), saS.names())
		return
	case strings.ContainsAny(smV.text, " \t\r\n") || len(smV.text) > 256:
		r.problem("%s is not a Sentinel master name: use the name from `sentinel monitor NAME ...`, without spaces", smS.describe(smV))
		return
	}
	addrs := r.redisAddrs(saS, saV)
	if addrs == nil {
		return
	}
	c.RedisFailover = &redis.FailoverOptions{MasterName: smV.text, SentinelAddrs: addrs,
		Username: userV.text, Password: pwV.text, SentinelPassword: spwV.text}
}

// redisAddrs parses a comma-separated host:port list, reporting every bad
// entry; nil after a problem.
func (r *resolver) redisAddrs(s *setting, v value) []string {
	parts := strings.Split(v.text, ",")
	if len(parts) > maxRedisAddrs {
		r.problem("%s lists %d addresses: at most %d", s.names(), len(parts), maxRedisAddrs)
		return nil
	}
	var out []string
	ok := true
	for _, p := range parts {
		p = strings.TrimSpace(p)
		host, port, err := net.SplitHostPort(p)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			r.problem("%s: %q is not a host:port address (want e.g. 10.0.0.1:6379,10.0.0.2:6379)", s.names(), p)
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

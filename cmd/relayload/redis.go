package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisWatch reads the CPU time of the Redis server a run uses (INFO cpu:
// used_cpu_user + used_cpu_sys, the server process's whole CPU time, every
// client's work included).
type redisWatch struct {
	rdb  *redis.Client
	addr string
	pid  int // INFO server process_id; 0 when unknown
}

// newRedisWatch connects to url (nothing is written).
func newRedisWatch(ctx context.Context, url string) (*redisWatch, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("--redis-url is not a redis:// or rediss:// URL")
	}
	w := &redisWatch{rdb: redis.NewClient(opts), addr: opts.Addr}
	if info, err := w.rdb.Info(ctx, "server").Result(); err == nil {
		w.pid, _ = strconv.Atoi(infoField(info, "process_id"))
	}
	return w, nil
}

// cpu returns the server's CPU time so far.
func (w *redisWatch) cpu(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := w.rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO cpu at %s: %w", w.addr, err)
	}
	return parseRedisCPU(info)
}

func (w *redisWatch) close() { _ = w.rdb.Close() }

// parseRedisCPU returns used_cpu_user + used_cpu_sys (seconds with
// microsecond digits) of an INFO cpu answer.
func parseRedisCPU(info string) (time.Duration, error) {
	var total time.Duration
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v := infoField(info, k)
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1e9 {
			return 0, fmt.Errorf("redis INFO cpu: %s is %q", k, v)
		}
		total += time.Duration(f * float64(time.Second))
	}
	return total, nil
}

// infoField returns the value of key in an INFO answer ("key:value" lines).
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), key+":"); ok {
			return v
		}
	}
	return ""
}

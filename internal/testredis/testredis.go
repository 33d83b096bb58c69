// Package testredis is the one way sealrelay's tests find their Redis:
// $REDIS_URL, never a hard-coded address. scripts/test.sh sets it, starting
// a private redis-server on a free port. Each test gets its own key prefix,
// and every key under it is removed (and counted) when the test ends, before
// the client is closed.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Hint tells a developer how to give the tests a Redis.
const Hint = "set REDIS_URL to a Redis the tests may use, e.g. " +
	"`redis-server --port 6390 --save '' --daemonize yes && export REDIS_URL=redis://127.0.0.1:6390/0`, " +
	"or run ./scripts/test.sh, which starts a private one"

// URL returns $REDIS_URL, failing t with Hint when it is not set.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		t.Fatalf("REDIS_URL is not set: %s", Hint)
	}
	return u
}

// Options returns the parsed $REDIS_URL.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	opts, err := redis.ParseURL(URL(t))
	if err != nil {
		t.Fatalf("REDIS_URL: %v", err)
	}
	return opts
}

// Client returns a client for $REDIS_URL that answered a PING; it is closed
// when t ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(Options(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("no Redis answers at REDIS_URL: %v (%s)", err, Hint)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix unique to this test, "srtest:<name>:<random>:",
// and registers the removal of every key under it on c when t ends. It is
// registered after Client's close, so it runs before it.
func Prefix(t testing.TB, c redis.UniversalClient, name string) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "srtest:" + name + ":" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, c, prefix); err != nil {
			t.Errorf("cleaning up Redis keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

// New returns a client for $REDIS_URL and a fresh prefix whose keys are
// removed when t ends.
func New(t testing.TB, name string) (*redis.Client, string) {
	t.Helper()
	c := Client(t)
	return c, Prefix(t, c, name)
}

// DeletePrefix removes every key under prefix on every master of c.
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	del := func(ctx context.Context, n *redis.Client) error {
		iter := n.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := n.Del(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, del)
	case *redis.Client:
		return del(ctx, c)
	default:
		panic("testredis: unsupported client type")
	}
}

package redisstore

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/queue"

	"github.com/sealrelay/sealrelay/queue/queuetest"
)

// newTestRedisClient connects to REDIS_CLUSTER_ADDRS (comma-separated, a
// Redis Cluster), else $REDIS_URL (internal/testredis). A missing Redis fails
// the test; it never skips.
func newTestRedisClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	if addrs := os.Getenv("REDIS_CLUSTER_ADDRS"); addrs != "" {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	} else {
		c = redis.NewClient(testredis.Options(t))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("no Redis for the tests: %v (%s)", err, testredis.Hint)
	}
	return c
}

// scanKeys lists the keys matching pattern on every master.
func scanKeys(ctx context.Context, c redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c *redis.Client) ([]string, error) {
		var out []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return out, iter.Err()
	}
	switch c := c.(type) {
	case *redis.ClusterClient:
		var (
			all []string
			mu  = make(chan struct{}, 1)
		)
		err := c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			keys, err := scan(ctx, n)
			mu <- struct{}{}
			all = append(all, keys...)
			<-mu
			return err
		})
		return all, err
	case *redis.Client:
		return scan(ctx, c)
	default:
		panic("unsupported client")
	}
}

// testPrefix returns a key prefix unique to this test, under this run's
// testredis prefix (TestMain checks nothing is left under it).
func testPrefix() string { return testredis.NewPrefix("queue") }

// cleanupPrefix deletes every key under prefix when t ends.
func cleanupPrefix(t testing.TB, c redis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		keys, err := scanKeys(ctx, c, prefix+"*")
		if err != nil {
			t.Errorf("cleanup scan: %v", err)
		}
		for _, k := range keys {
			c.Del(ctx, k)
		}
	})
}

func openRedisStores(t testing.TB, opts InboxOptions, n int) []*Inbox {
	t.Helper()
	admin := newTestRedisClient(t)
	t.Cleanup(func() { _ = admin.Close() })
	if opts.Prefix == "" {
		opts.Prefix = testPrefix()
	}
	cleanupPrefix(t, admin, opts.Prefix)
	var out []*Inbox
	for range n {
		c := newTestRedisClient(t)
		s, err := NewInbox(c, opts)
		if err != nil {
			t.Fatalf("NewInbox: %v", err)
		}
		t.Cleanup(func() {
			_ = s.Close()
			_ = c.Close()
		})
		out = append(out, s)
	}
	return out
}

func redisHarness() queuetest.Harness {
	return queuetest.Harness{
		Open: func(t *testing.T, opts queue.Options, n int) []queue.Store {
			var out []queue.Store
			for _, s := range openRedisStores(t, InboxOptions{Options: opts, SweepInterval: 100 * time.Millisecond, PollInterval: time.Hour}, n) {
				out = append(out, s)
			}
			return out
		},
		Waiting: func(s queue.Store, inbox string) int { return s.(*Inbox).waiting(inbox) },
		Residue: func(t *testing.T, st queue.Store) int {
			s := st.(*Inbox)
			ctx := queuetest.TestCtx(t)
			keys, err := scanKeys(ctx, s.c, s.opts.Prefix+"ib:*")
			if err != nil {
				t.Fatalf("scan: %v", err)
			}
			reg, err := s.c.ZCard(ctx, s.registry).Result()
			if err != nil {
				t.Fatalf("registry: %v", err)
			}
			return len(keys) + int(reg)
		},
	}
}

func TestRedisConformance(t *testing.T) {
	queuetest.Run(t, redisHarness())
}

// Package testredis is the one way sealrelay's tests find their Redis:
// $REDIS_URL, never a hard-coded address. scripts/test.sh sets it, starting
// a private redis-server on a free port. Each test gets its own key prefix,
// and every key under it is removed when the test ends, before the client
// is closed.
//
// The leftover rule: every package whose tests use Redis calls Main (or
// Run) from its TestMain. Every prefix this package hands out starts with
// "srtest:<run id>:", the run id being unique to one test binary's run; after
// the tests, Main scans $REDIS_URL for keys under "srtest:<run id>:" and
// fails the run, listing them, when any is left (then deletes them). That
// catches a test whose cleanup never ran, ran on a closed client, or ran
// before a goroutine wrote its last key; a test that removes its own keys
// and the prefix cleanup are both fine. Tests that build a key prefix by
// hand must take it from NewPrefix so that the check sees their keys.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
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

// runID is unique to this test binary's run; every prefix starts with
// "srtest:<runID>:".
var runID = randomHex(6)

// used records that a prefix was handed out, so Main checks Redis only
// when the run used it.
var used atomic.Bool

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RunPrefix is the part every prefix of this run starts with,
// "srtest:<run id>:".
func RunPrefix() string { return "srtest:" + runID + ":" }

// NewPrefix returns a fresh key prefix of this run,
// "srtest:<run id>:<name>:<random>:", without registering a cleanup (the
// caller removes its keys; Main checks it did).
func NewPrefix(name string) string {
	used.Store(true)
	return RunPrefix() + name + ":" + randomHex(6) + ":"
}

// Prefix returns a key prefix unique to this test (NewPrefix) and
// registers the removal of every key under it on c when t ends. It is
// registered after Client's close, so it runs before it.
func Prefix(t testing.TB, c redis.UniversalClient, name string) string {
	t.Helper()
	prefix := NewPrefix(name)
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

// Main runs the tests of m and exits: with m.Run's code, or 1 when keys of
// this run are left in $REDIS_URL (see the package doc). Call it from
// TestMain: func TestMain(m *testing.M) { testredis.Main(m) }.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain with its own setup: it runs
// m and returns the exit code, failing (1) when keys of this run are left.
func Run(m *testing.M) int {
	code := m.Run()
	if err := CheckLeftovers(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "testredis:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// maxListed bounds the leftover keys named in CheckLeftovers' error.
const maxListed = 20

// CheckLeftovers reports keys under RunPrefix in $REDIS_URL, naming up to
// 20 of them, and deletes them. It does nothing when no prefix was handed
// out in this run.
func CheckLeftovers(ctx context.Context) error {
	if !used.Load() {
		return nil
	}
	u := os.Getenv("REDIS_URL")
	if u == "" {
		return nil // the tests that needed Redis failed with Hint already
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return checkLeftovers(ctx, c, RunPrefix())
}

// checkLeftovers is CheckLeftovers on c for prefix.
func checkLeftovers(ctx context.Context, c *redis.Client, prefix string) error {
	var left []string
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		left = append(left, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scanning for leftover keys under %s: %w", prefix, err)
	}
	if len(left) == 0 {
		return nil
	}
	named := left
	if len(named) > maxListed {
		named = named[:maxListed]
	}
	if err := DeletePrefix(ctx, c, prefix); err != nil {
		return fmt.Errorf("%d keys left behind under %s (%s); removing them: %w", len(left), prefix, strings.Join(named, ", "), err)
	}
	return fmt.Errorf("tests left %d keys behind under %s (a cleanup did not run or ran on a closed client): %s", len(left), prefix, strings.Join(named, ", "))
}

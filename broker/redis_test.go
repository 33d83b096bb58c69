package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/redis/go-redis/v9"
)

const testRedisAddr = "127.0.0.1:6379"

// testRedis returns a client for the local Redis and a unique key prefix;
// every key under the prefix is deleted when the test ends.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", testRedisAddr, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "srtest:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, k := range scanKeys(t, rdb, prefix) {
			rdb.Del(ctx, k)
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

func scanKeys(t testing.TB, rdb *redis.Client, prefix string) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(context.Background(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scan: %v", err)
	}
	return keys
}

func TestRedisState(t *testing.T) {
	testState(t, func(t *testing.T) State {
		rdb, prefix := testRedis(t)
		return NewRedisState(rdb, prefix)
	})
}

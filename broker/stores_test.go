package broker

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

// testRedis returns a client for $REDIS_URL and a unique key prefix;
// every key under the prefix is deleted when the test ends.
func testRedis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	return testredis.New(t, "broker")
}

// scanKeys lists the keys under prefix.
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

// openTestBoltState opens an embedded state at path, closed when t ends.
func openTestBoltState(t testing.TB, path string) *boltstore.State {
	t.Helper()
	st, err := boltstore.OpenState(path)
	if err != nil {
		t.Fatalf("open embedded state: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

package redisstore

import (
	"testing"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

// TestMain fails the run when a test left keys in the test Redis
// (internal/testredis's leftover rule).
func TestMain(m *testing.M) { testredis.Main(m) }

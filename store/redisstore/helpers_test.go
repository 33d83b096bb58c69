package redisstore

import (
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/state/statetest"
)

// The suite's token hash kinds and helpers, for this package's own tests.
const (
	KindAccessToken       = statetest.KindAccessToken
	KindRegistrationToken = statetest.KindRegistrationToken
	KindOAuthState        = statetest.KindOAuthState
	KindUnregisterSig     = statetest.KindUnregisterSig
)

func testHashKey(testing.TB) *statetest.HashKey { return &statetest.HashKey{} }

func testAgent(t testing.TB, hk *statetest.HashKey, id, org string, now time.Time) *state.Agent {
	return statetest.NewAgent(t, hk, id, org, now)
}

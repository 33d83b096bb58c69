package state_test

import (
	"testing"

	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/state/statetest"
)

func TestMemHolds(t *testing.T) {
	t.Parallel()
	statetest.RunHoldHub(t, func(*testing.T) state.HoldHub { return state.NewMemHolds() })
}

package statetest

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// newHoldID returns a random id of the broker's hold id form ("h" + hex).
func newHoldID() (string, error) {
	b, err := crypto.RandomBytes((state.HoldIDLength - 1) / 2)
	if err != nil {
		return "", err
	}
	return "h" + hex.EncodeToString(b), nil
}

// RunHoldHub is the state.HoldHub conformance suite; newHub returns a
// fresh hub (closed by the test). The first claim of the right org wins
// and hands over the answer, the deadline and a claim exclude each other,
// and tombstones tell late and duplicate responds apart from unknown ones.
func RunHoldHub(t *testing.T, newHub func(t *testing.T) state.HoldHub) {
	type step struct {
		op      string // claim, claimOther (another org), expire
		want    state.HoldClaim
		expired bool
	}
	seqs := []struct {
		name      string
		steps     []step
		delivered bool
	}{
		{"claim wins", []step{{op: "claim", want: state.HoldWon}, {op: "claim", want: state.HoldAnswered}, {op: "expire", expired: false}}, true},
		{"deadline wins", []step{{op: "expire", expired: true}, {op: "claim", want: state.HoldLate}, {op: "claim", want: state.HoldLate}}, false},
		{"other org", []step{{op: "claimOther", want: state.HoldNotHeld}, {op: "claim", want: state.HoldWon}, {op: "claimOther", want: state.HoldNotHeld}}, true},
	}
	hub := newHub(t)
	ctx := context.Background()
	if res, err := hub.Claim(ctx, "h"+"0123456789abcdef0123456789abcd", "T1", []byte("x")); err != nil || res != state.HoldNotHeld {
		t.Fatalf("unknown hold: %v %v", res, err)
	}
	for _, sq := range seqs {
		id, err := newHoldID()
		if err != nil {
			t.Fatal(err)
		}
		ch, err := hub.Hold(ctx, id, "T1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range sq.steps {
			switch st.op {
			case "expire":
				got, err := hub.Expire(ctx, id)
				if err != nil || got != st.expired {
					t.Fatalf("%s step %d: expire %v %v, want %v", sq.name, i, got, err, st.expired)
				}
			default:
				org := "T1"
				if st.op == "claimOther" {
					org = "T2"
				}
				got, err := hub.Claim(ctx, id, org, []byte("answer-"+id))
				if err != nil || got != st.want {
					t.Fatalf("%s step %d: claim %v %v, want %v", sq.name, i, got, err, st.want)
				}
			}
		}
		if sq.delivered {
			if got := string(<-ch); got != "answer-"+id {
				t.Fatalf("%s: handed over %q", sq.name, got)
			}
		} else if len(ch) != 0 {
			t.Fatalf("%s: an answer was handed over", sq.name)
		}
		hub.Release(id)
	}
}

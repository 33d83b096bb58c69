package broker

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// Holding Slack's request until an agent answers it (protocol §8.2).
//
// A held Slack request gets a hold id, which is also the message id of
// every copy of it (one per inbox, so the id stays unique per inbox). A
// respond names that message id; the first valid one claims the hold in a
// state.HoldHub shared by every replica and hands the answer to the replica that
// holds Slack's connection. Claiming and expiring are atomic in the hub, so
// exactly one of "an agent answered" and "the deadline passed" wins.
//
// The answer never reaches the shared store in the clear: the replica that
// accepted the respond seals it anonymously (crypto_box_seal) to the
// broker's own X25519 key, which every replica holds, and passes only that
// ciphertext, through Redis pub/sub or in process; the hold record itself is
// a pointer (the holding replica and the org), never the answer.

const (
	// holdIDPrefix starts the message id of a held copy. Queue-chosen ids
	// are lowercase hex, so the prefix tells them apart without a lookup.
	holdIDPrefix = "h"
	// holdIDBytes is the randomness of a hold id: "h" + 30 hex = 31 bytes
	// (state.HoldIDLength), inside the queue's 32-byte id limit.
	holdIDBytes = (state.HoldIDLength - len(holdIDPrefix)) / 2
	// holdTombstone is how long a decided hold is remembered, so that a
	// respond after the deadline is told apart (and logged as late) from
	// one for a message that was never held.
	holdTombstone = state.HoldTombstone
	// holdLostGrace bounds the wait for an answer whose respond claimed the
	// hold but whose hand-over has not arrived yet (it is in flight between
	// replicas). Slack gives up 3 s after its request, the default deadline
	// is 2.5 s.
	holdLostGrace = 300 * time.Millisecond
)

// The hold claim outcomes, in the hub's terms (state.HoldHub).
const (
	claimNotHeld  = state.HoldNotHeld
	claimWon      = state.HoldWon
	claimLate     = state.HoldLate
	claimAnswered = state.HoldAnswered
)

// newHoldID returns a fresh random hold id.
func newHoldID() (string, error) {
	b, err := crypto.RandomBytes(holdIDBytes)
	if err != nil {
		return "", err
	}
	return holdIDPrefix + hex.EncodeToString(b), nil
}

// isHoldID reports whether a message id has the form of a hold id.
func isHoldID(id string) bool {
	if len(id) != len(holdIDPrefix)+2*holdIDBytes || !strings.HasPrefix(id, holdIDPrefix) {
		return false
	}
	_, err := hex.DecodeString(id[len(holdIDPrefix):])
	return err == nil
}

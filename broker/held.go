package broker

import (
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// Holding Slack's request until an agent answers it (protocol §8.2).
//
// A held Slack request gets a hold id, which is also the message id of
// every copy of it (one per inbox, so the id stays unique per inbox). A
// respond names that message id; the first valid one claims the hold in a
// holdHub shared by every replica and hands the answer to the replica that
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
	// holdIDBytes is the randomness of a hold id: "h" + 30 hex = 31 bytes,
	// inside the queue's 32-byte id limit.
	holdIDBytes = 15
	// holdTombstone is how long a decided hold is remembered, so that a
	// respond after the deadline is told apart (and logged as late) from
	// one for a message that was never held.
	holdTombstone = time.Minute
	// holdLostGrace bounds the wait for an answer whose respond claimed the
	// hold but whose hand-over has not arrived yet (it is in flight between
	// replicas). Slack gives up 3 s after its request, the default deadline
	// is 2.5 s.
	holdLostGrace = 300 * time.Millisecond
)

// holdClaim is the outcome of holdHub.claim.
type holdClaim int

const (
	claimNotHeld  holdClaim = iota // unknown id, or another org's
	claimWon                       // this respond answers Slack
	claimLate                      // the deadline passed before it
	claimAnswered                  // another respond was first
)

// holdHub is the cross-replica rendezvous of held requests.
type holdHub interface {
	// hold registers a hold of org for up to ttl and returns the channel
	// its sealed answer arrives on.
	hold(ctx context.Context, id, org string, ttl time.Duration) (<-chan []byte, error)
	// claim decides a respond for id from an agent of org; with claimWon the
	// sealed answer has been handed to the holder.
	claim(ctx context.Context, id, org string, sealed []byte) (holdClaim, error)
	// expire marks a hold decided by its deadline. It reports false when a
	// respond claimed it first (its answer is on the hold's channel, or on
	// its way there).
	expire(ctx context.Context, id string) (bool, error)
	// release forgets the hold's channel in this process.
	release(id string)
	// close stops the hub's background work.
	close() error
}

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

// memHolds is the in-process holdHub of the embedded (bbolt) mode, where one
// process serves every request.
type memHolds struct {
	mu    sync.Mutex
	holds map[string]*memHold
	now   func() time.Time
}

type memHold struct {
	org     string
	ch      chan []byte
	state   holdClaim // claimNotHeld while open, then claimLate or claimAnswered
	expires time.Time
}

func newMemHolds() *memHolds {
	return &memHolds{holds: map[string]*memHold{}, now: time.Now}
}

func (m *memHolds) sweep(now time.Time) {
	for id, h := range m.holds {
		if now.After(h.expires) {
			delete(m.holds, id)
		}
	}
}

func (m *memHolds) hold(_ context.Context, id, org string, ttl time.Duration) (<-chan []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.holds) > 0 && len(m.holds)%256 == 0 {
		m.sweep(now)
	}
	h := &memHold{org: org, ch: make(chan []byte, 1), expires: now.Add(ttl)}
	m.holds[id] = h
	return h.ch, nil
}

func (m *memHolds) claim(_ context.Context, id, org string, sealed []byte) (holdClaim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.holds[id]
	if h == nil || h.org != org || m.now().After(h.expires) {
		return claimNotHeld, nil
	}
	switch h.state {
	case claimLate, claimAnswered:
		return h.state, nil
	}
	h.state = claimAnswered
	h.expires = m.now().Add(holdTombstone)
	if h.ch != nil {
		h.ch <- sealed // buffered, and only the winner sends
	}
	return claimWon, nil
}

func (m *memHolds) expire(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.holds[id]
	if h == nil {
		return true, nil
	}
	if h.state == claimAnswered {
		return false, nil
	}
	h.state = claimLate
	h.expires = m.now().Add(holdTombstone)
	return true, nil
}

func (m *memHolds) release(id string) {
	m.mu.Lock()
	if h := m.holds[id]; h != nil {
		h.ch = nil
		if h.state == claimNotHeld {
			delete(m.holds, id)
		}
	}
	m.mu.Unlock()
}

func (m *memHolds) close() error { return nil }

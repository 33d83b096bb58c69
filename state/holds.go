package state

import (
	"context"
	"sync"
	"time"
)

// HoldTombstone is how long a hub remembers a decided hold, so that a
// respond after the deadline is told apart (and logged as late) from one
// for a message that was never held.
const HoldTombstone = time.Minute

// HoldIDLength is the length of every hold id (the broker's "h" + 30 hex
// digits), which lets a hub frame an id and an answer without a separator.
const HoldIDLength = 31

// HoldClaim is the outcome of HoldHub.Claim.
type HoldClaim int

// HoldClaim values.
const (
	HoldNotHeld  HoldClaim = iota // unknown id, or another org's
	HoldWon                       // this respond answers Slack
	HoldLate                      // the deadline passed before it
	HoldAnswered                  // another respond was first
)

// HoldHub is the cross-replica rendezvous of held Slack requests (protocol
// §8.2). A held request gets a hold id; the first valid respond for it
// claims the hold and its sealed answer is handed to the process holding
// Slack's connection. Claiming and expiring are atomic in the hub, so
// exactly one of "an agent answered" and "the deadline passed" wins. The
// hub carries only ciphertext (the answer sealed to the broker's own key)
// and pointers (holding process, org), never an answer in the clear.
type HoldHub interface {
	// Hold registers a hold of org for up to ttl and returns the channel
	// its sealed answer arrives on.
	Hold(ctx context.Context, id, org string, ttl time.Duration) (<-chan []byte, error)
	// Claim decides a respond for id from an agent of org; with HoldWon the
	// sealed answer has been handed to the holder.
	Claim(ctx context.Context, id, org string, sealed []byte) (HoldClaim, error)
	// Expire marks a hold decided by its deadline. It reports false when a
	// respond claimed it first (its answer is on the hold's channel, or on
	// its way there).
	Expire(ctx context.Context, id string) (bool, error)
	// Release forgets the hold's channel in this process.
	Release(id string)
	// Close stops the hub's background work.
	Close() error
}

var _ HoldHub = (*MemHolds)(nil)

// MemHolds is the in-process HoldHub of the embedded mode, where one
// process serves every request. Create it with NewMemHolds.
type MemHolds struct {
	mu    sync.Mutex
	holds map[string]*memHold
	now   func() time.Time
}

type memHold struct {
	org     string
	ch      chan []byte
	state   HoldClaim // HoldNotHeld while open, then HoldLate or HoldAnswered
	expires time.Time
}

// NewMemHolds returns an empty in-process hub.
func NewMemHolds() *MemHolds {
	return &MemHolds{holds: map[string]*memHold{}, now: time.Now}
}

func (m *MemHolds) sweep(now time.Time) {
	for id, h := range m.holds {
		if now.After(h.expires) {
			delete(m.holds, id)
		}
	}
}

// Hold implements HoldHub.
func (m *MemHolds) Hold(_ context.Context, id, org string, ttl time.Duration) (<-chan []byte, error) {
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

// Claim implements HoldHub.
func (m *MemHolds) Claim(_ context.Context, id, org string, sealed []byte) (HoldClaim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.holds[id]
	if h == nil || h.org != org || m.now().After(h.expires) {
		return HoldNotHeld, nil
	}
	switch h.state {
	case HoldLate, HoldAnswered:
		return h.state, nil
	}
	h.state = HoldAnswered
	h.expires = m.now().Add(HoldTombstone)
	if h.ch != nil {
		h.ch <- sealed // buffered, and only the winner sends
	}
	return HoldWon, nil
}

// Expire implements HoldHub.
func (m *MemHolds) Expire(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.holds[id]
	if h == nil {
		return true, nil
	}
	if h.state == HoldAnswered {
		return false, nil
	}
	h.state = HoldLate
	h.expires = m.now().Add(HoldTombstone)
	return true, nil
}

// Release implements HoldHub.
func (m *MemHolds) Release(id string) {
	m.mu.Lock()
	if h := m.holds[id]; h != nil {
		h.ch = nil
		if h.state == HoldNotHeld {
			delete(m.holds, id)
		}
	}
	m.mu.Unlock()
}

// Close implements HoldHub.
func (m *MemHolds) Close() error { return nil }

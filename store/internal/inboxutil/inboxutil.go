// Package inboxutil holds what both inbox engines (store/redisstore and
// store/boltstore) share beyond the queue contract: the in-process hub of
// waiting Pulls, argument checks, receipt parsing and fresh ids.
package inboxutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

// Hub tracks the Pulls waiting in this process, per inbox, so that a wake-up
// (an in-process Enqueue, or a pub/sub notice from another process) reaches
// exactly the waiters of that inbox.
type Hub struct {
	mu      sync.Mutex
	waiters map[string]map[*Waiter]struct{}
}

// Waiter is one waiting Pull. C has room for one pending wake-up so a notice
// that arrives while the waiter is busy pulling is not lost.
type Waiter struct {
	// C receives the wake-ups.
	C chan struct{}
	// armed is set once the Pull's first look at the inbox found nothing:
	// from then on it only waits (what count reports).
	armed atomic.Bool
}

// Arm marks the waiter as waiting, past its first look at the inbox.
func (w *Waiter) Arm() { w.armed.Store(true) }

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{waiters: make(map[string]map[*Waiter]struct{})}
}

// Add registers a waiter for inbox. Register before pulling, so that an
// Enqueue landing between the pull and the wait still wakes the waiter.
func (h *Hub) Add(inbox string) *Waiter {
	w := &Waiter{C: make(chan struct{}, 1)}
	h.mu.Lock()
	set := h.waiters[inbox]
	if set == nil {
		set = make(map[*Waiter]struct{})
		h.waiters[inbox] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w
}

// Remove unregisters w.
func (h *Hub) Remove(inbox string, w *Waiter) {
	h.mu.Lock()
	if set := h.waiters[inbox]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.waiters, inbox)
		}
	}
	h.mu.Unlock()
}

// Count reports how many Pulls of this process wait on inbox (past their
// first look at it).
func (h *Hub) Count(inbox string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for w := range h.waiters[inbox] {
		if w.armed.Load() {
			n++
		}
	}
	return n
}

func (w *Waiter) poke() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// Wake pokes every waiter of inbox.
func (h *Hub) Wake(inbox string) {
	h.mu.Lock()
	for w := range h.waiters[inbox] {
		w.poke()
	}
	h.mu.Unlock()
}

// WakeAll pokes every waiter of every inbox (after a pub/sub reconnect, when
// notices may have been missed).
func (h *Hub) WakeAll() {
	h.mu.Lock()
	for _, set := range h.waiters {
		for w := range set {
			w.poke()
		}
	}
	h.mu.Unlock()
}

// CheckPull validates the arguments shared by both stores' Pull.
func CheckPull(inbox string, max int, wait time.Duration) error {
	if err := queue.ValidateInbox(inbox); err != nil {
		return err
	}
	if max < 1 || max > queue.MaxPull {
		return fmt.Errorf("%w: max %d outside 1–%d", queue.ErrInvalidArgument, max, queue.MaxPull)
	}
	if wait < 0 {
		return fmt.Errorf("%w: negative wait %v", queue.ErrInvalidArgument, wait)
	}
	return nil
}

// CheckEnqueue validates the arguments of Enqueue.
func CheckEnqueue(inbox string, body []byte) error {
	if err := queue.ValidateInbox(inbox); err != nil {
		return err
	}
	if len(body) > queue.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes (max %d)", queue.ErrTooLarge, len(body), queue.MaxMessageSize)
	}
	return nil
}

// Receipt is one parsed Ack argument: a message id and, for a full
// receipt, its delivery count (0 for a bare id).
type Receipt struct {
	ID         string
	Deliveries int
}

// ParseReceipts parses receipts, silently skipping malformed ones: a receipt
// that cannot name a message acknowledges nothing, which is not an error.
func ParseReceipts(receipts []string) []Receipt {
	out := make([]Receipt, 0, len(receipts))
	for _, r := range receipts {
		if len(r) > 64 {
			continue
		}
		id, d, ok := queue.ParseReceipt(r)
		if !ok {
			continue
		}
		out = append(out, Receipt{ID: id, Deliveries: d})
	}
	return out
}

// CheckItem validates one item and fills in a fresh id when it has none;
// keyed reports whether the caller chose the id.
func CheckItem(it queue.Item, res *queue.Result) (keyed bool) {
	if err := CheckEnqueue(it.Inbox, it.Body); err != nil {
		res.Err = err
		return false
	}
	if it.ID == "" {
		res.ID = NewID()
		return false
	}
	res.ID = it.ID
	if err := queue.ValidateID(it.ID); err != nil {
		res.Err = err
	}
	return true
}

// NewID returns a fresh message id: 128 random bits in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

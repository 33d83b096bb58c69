package queue

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// hub tracks the Pulls waiting in this process, per inbox, so that a wake-up
// (an in-process Enqueue, or a pub/sub notice from another process) reaches
// exactly the waiters of that inbox.
type hub struct {
	mu      sync.Mutex
	waiters map[string]map[*waiter]struct{}
}

// waiter is one waiting Pull. ch has room for one pending wake-up so a notice
// that arrives while the waiter is busy pulling is not lost.
type waiter struct {
	ch chan struct{}
	// armed is set once the Pull's first look at the inbox found nothing:
	// from then on it only waits (what count reports).
	armed atomic.Bool
}

// arm marks the waiter as waiting, past its first look at the inbox.
func (w *waiter) arm() { w.armed.Store(true) }

func newHub() *hub {
	return &hub{waiters: make(map[string]map[*waiter]struct{})}
}

// add registers a waiter for inbox. Register before pulling, so that an
// Enqueue landing between the pull and the wait still wakes the waiter.
func (h *hub) add(inbox string) *waiter {
	w := &waiter{ch: make(chan struct{}, 1)}
	h.mu.Lock()
	set := h.waiters[inbox]
	if set == nil {
		set = make(map[*waiter]struct{})
		h.waiters[inbox] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	return w
}

func (h *hub) remove(inbox string, w *waiter) {
	h.mu.Lock()
	if set := h.waiters[inbox]; set != nil {
		delete(set, w)
		if len(set) == 0 {
			delete(h.waiters, inbox)
		}
	}
	h.mu.Unlock()
}

// count reports how many Pulls of this process wait on inbox (past their
// first look at it).
func (h *hub) count(inbox string) int {
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

func (w *waiter) poke() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// wake pokes every waiter of inbox.
func (h *hub) wake(inbox string) {
	h.mu.Lock()
	for w := range h.waiters[inbox] {
		w.poke()
	}
	h.mu.Unlock()
}

// wakeAll pokes every waiter of every inbox (after a pub/sub reconnect, when
// notices may have been missed).
func (h *hub) wakeAll() {
	h.mu.Lock()
	for _, set := range h.waiters {
		for w := range set {
			w.poke()
		}
	}
	h.mu.Unlock()
}

// checkPull validates the arguments shared by both stores' Pull.
func checkPull(inbox string, max int, wait time.Duration) error {
	if err := ValidateInbox(inbox); err != nil {
		return err
	}
	if max < 1 || max > MaxPull {
		return fmt.Errorf("%w: max %d outside 1–%d", ErrInvalidArgument, max, MaxPull)
	}
	if wait < 0 {
		return fmt.Errorf("%w: negative wait %v", ErrInvalidArgument, wait)
	}
	return nil
}

// checkEnqueue validates the arguments of Enqueue.
func checkEnqueue(inbox string, body []byte) error {
	if err := ValidateInbox(inbox); err != nil {
		return err
	}
	if len(body) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrTooLarge, len(body), MaxMessageSize)
	}
	return nil
}

// parsedReceipt is one parsed Ack argument.
type parsedReceipt struct {
	id         string
	deliveries int
}

// parseReceipts parses receipts, silently skipping malformed ones: a receipt
// that cannot name a message acknowledges nothing, which is not an error.
func parseReceipts(receipts []string) []parsedReceipt {
	out := make([]parsedReceipt, 0, len(receipts))
	for _, r := range receipts {
		if len(r) > 64 {
			continue
		}
		id, d, ok := ParseReceipt(r)
		if !ok {
			continue
		}
		out = append(out, parsedReceipt{id: id, deliveries: d})
	}
	return out
}

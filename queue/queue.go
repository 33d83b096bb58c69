// Package queue is sealrelay's leased inbox: one FIFO inbox per agent holding
// opaque sealed messages until the agent pulls and acknowledges them.
//
// # Contract
//
// Both implementations (the Redis store for many broker replicas, the embedded
// bbolt store for a single broker process) give the same guarantees, checked
// by one conformance suite:
//
//   - Delivery is at-least-once. A message leaves its inbox only when it is
//     acknowledged, dead-lettered, purged, or older than the retention period.
//   - Order: messages of one inbox are handed out in the order Enqueue returned
//     for them. A message whose lease lapses goes back to its original place.
//   - Lease: Pull leases each returned message for the lease duration; while
//     leased it is invisible to every other Pull. Each lease increments the
//     message's delivery count (1 on the first delivery).
//   - Receipts: Ack takes receipts. A full receipt ("<id>#<n>", Message.Receipt)
//     removes the message only while its delivery count is still n, so a stale
//     receipt cannot remove a message that was leased again. A bare id
//     ("<id>", Message.ID) removes the message if it has been delivered at
//     least once, whatever its current lease; the broker uses bare ids because
//     the wire protocol carries only message ids and every lease of an inbox
//     belongs to the same agent. Unknown, already acknowledged or stale
//     receipts remove nothing and are not errors.
//   - Dead letters: a message pulled MaxDeliveries times without an ack moves
//     to the inbox's dead-letter list instead of being leased again. Dead
//     letters can be listed, re-driven (back to the ready list with a fresh
//     delivery count) and purged.
//   - Retention: a message older than the retention period is removed whether
//     ready, leased or dead-lettered; an inbox nobody pulls is swept too, and
//     an empty inbox leaves no key or bucket behind.
//   - Capacity: Enqueue into an inbox holding Capacity messages (ready plus
//     leased) fails with ErrInboxFull; nothing is evicted.
//
// Durability depends on the store; see RedisStore and BoltStore.
package queue

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults for Options fields left zero.
const (
	DefaultLease         = 30 * time.Second
	DefaultMaxDeliveries = 10
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultCapacity      = 10000
	// MaxMessageSize is the largest body Enqueue accepts.
	MaxMessageSize = 1 << 20
	// MaxPull is the largest batch one Pull returns.
	MaxPull = 100
)

// Typed errors. Callers test them with errors.Is.
var (
	// ErrInboxFull means the inbox holds Options.Capacity messages.
	ErrInboxFull = errors.New("queue: inbox full")
	// ErrTooLarge means the body exceeds MaxMessageSize.
	ErrTooLarge = errors.New("queue: message too large")
	// ErrInvalidInbox means the inbox name is empty, too long or has
	// characters outside [A-Za-z0-9._:-].
	ErrInvalidInbox = errors.New("queue: invalid inbox name")
	// ErrInvalidArgument means a count or duration is out of range.
	ErrInvalidArgument = errors.New("queue: invalid argument")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("queue: store closed")
)

// Options tune a store. Zero fields take the defaults above.
type Options struct {
	// Lease is how long a pulled message stays invisible before it becomes
	// available again.
	Lease time.Duration
	// MaxDeliveries is how many leases a message gets before it is moved to
	// the dead-letter list.
	MaxDeliveries int
	// Retention is the maximum age of any message.
	Retention time.Duration
	// Capacity is the maximum number of ready plus leased messages per inbox.
	Capacity int
}

// WithDefaults returns o with every zero field replaced by its default.
func (o Options) WithDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = DefaultMaxDeliveries
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	return o
}

// Message is one leased (or dead-lettered) message.
type Message struct {
	// ID is stable for the life of the message and unique per inbox.
	ID string
	// Body is the opaque payload given to Enqueue.
	Body []byte
	// Deliveries counts leases so far, including the current one.
	Deliveries int
	// EnqueuedAt is when Enqueue stored the message (store clock).
	EnqueuedAt time.Time
	// Receipt acknowledges exactly this lease; see the package doc.
	Receipt string
}

// Stats describe one inbox, for metrics and health endpoints.
type Stats struct {
	// Ready is the number of messages waiting to be pulled.
	Ready int
	// Leased is the number of messages currently leased.
	Leased int
	// DeadLetters is the number of dead-lettered messages.
	DeadLetters int
	// OldestAge is the age of the oldest ready or leased message, zero when
	// there is none.
	OldestAge time.Duration
}

// Depth is the number of messages not yet acknowledged (ready plus leased).
func (s Stats) Depth() int { return s.Ready + s.Leased }

// Store is a set of leased inboxes. All methods are safe for concurrent use.
type Store interface {
	// Enqueue appends body to inbox and returns the new message's id. When it
	// returns nil the message is stored as durably as the store promises.
	Enqueue(ctx context.Context, inbox string, body []byte) (string, error)
	// Pull leases up to max (1–MaxPull) messages in FIFO order. With wait > 0
	// and no message available it blocks until one is, wait passes, or ctx
	// ends; it then returns an empty slice and a nil error (or ctx's error
	// when ctx ended).
	Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]Message, error)
	// Ack removes the messages named by receipts and returns how many it
	// removed.
	Ack(ctx context.Context, inbox string, receipts []string) (int, error)
	// Stats reports the inbox's counters.
	Stats(ctx context.Context, inbox string) (Stats, error)
	// DeadLetters lists up to limit dead-lettered messages, oldest first.
	DeadLetters(ctx context.Context, inbox string, limit int) ([]Message, error)
	// Redrive moves the named dead letters (all of them when ids is empty)
	// back to the ready list with a delivery count of zero, and returns how
	// many it moved.
	Redrive(ctx context.Context, inbox string, ids []string) (int, error)
	// PurgeDeadLetters deletes every dead letter of inbox and returns how
	// many it deleted.
	PurgeDeadLetters(ctx context.Context, inbox string) (int, error)
	// DeleteInbox removes the inbox and everything in it.
	DeleteInbox(ctx context.Context, inbox string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources and wakes every waiting Pull.
	Close() error
}

var inboxPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// ValidateInbox reports whether name can be used as an inbox name: 1–200
// bytes of [A-Za-z0-9._:-], starting with a letter or digit.
func ValidateInbox(name string) error {
	if len(name) == 0 || len(name) > 200 || !inboxPattern.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrInvalidInbox, name)
	}
	return nil
}

// FormatReceipt builds the receipt for lease number deliveries of message id.
func FormatReceipt(id string, deliveries int) string {
	return id + "#" + strconv.Itoa(deliveries)
}

// ParseReceipt splits a receipt into its message id and delivery count. A bare
// id yields deliveries == 0, meaning "whatever the current lease".
func ParseReceipt(receipt string) (id string, deliveries int, ok bool) {
	id, n, found := strings.Cut(receipt, "#")
	if id == "" {
		return "", 0, false
	}
	if !found {
		return id, 0, true
	}
	d, err := strconv.Atoi(n)
	if err != nil || d < 1 {
		return "", 0, false
	}
	return id, d, true
}

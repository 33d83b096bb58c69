// Package queue is the contract of sealrelay's leased inbox: one FIFO inbox
// per agent holding opaque sealed messages until the agent pulls and
// acknowledges them. The engines live elsewhere: redisstore.Inbox
// (store/redisstore) for many broker replicas, boltstore.Inbox
// (store/boltstore) for a single broker process.
//
// # Contract
//
// Both engines give the same guarantees, checked by one conformance suite
// (queue/queuetest, run from the engines' tests against a Redis, a
// three-node Redis Cluster and bbolt):
//
//   - Delivery is at-least-once. A message leaves its inbox only when it is
//     acknowledged, dead-lettered, purged, deleted with DeleteInbox, or older
//     than the retention period. Exactly-once is not promised: a message whose
//     lease lapses, or whose ack is lost in a crash, is delivered again.
//   - Ids: Message.ID is an opaque string of at most 32 characters without
//     '#', stable for the life of the message. Ids chosen by Enqueue are 128
//     random bits (both stores), so they are never reused: not within an
//     inbox, not after the store's data is restored from a backup, not by a
//     second store. Ids chosen by the caller (EnqueueID) are the caller's
//     business.
//   - Idempotent enqueue: EnqueueID stores a message under the caller's id
//     unless a message with that id is in the inbox (ready, leased or dead)
//     or was stored in it by EnqueueID within Options.DedupWindow; the store
//     remembers up to Options.DedupCapacity such ids per inbox (the oldest
//     are forgotten first) and keeps them across restarts, and DeleteInbox
//     forgets them. A repeated EnqueueID is therefore a no-op even when the
//     first one's outcome was unknown to its caller (a lost reply) and the
//     message has been acknowledged since. A no-op never fails with
//     ErrInboxFull.
//   - Batches: EnqueueIDs (BatchEnqueuer, both stores) stores many messages
//     for any inboxes in one Redis round trip or one bbolt transaction; each
//     item behaves as its own Enqueue (empty id) or EnqueueID call, with its
//     own error, and the items of one inbox keep their order.
//   - Order: messages of one inbox are handed out in the order Enqueue returned
//     for them (concurrent Enqueues have no defined order among themselves). A
//     message whose lease lapses goes back to its original place, ahead of
//     everything enqueued after it.
//   - Lease: Pull leases each returned message for Options.Lease; while leased
//     it is invisible to every other Pull, through any store instance. Each
//     lease increments the message's delivery count (1 on the first delivery).
//     A lapsed lease makes the message available at once; the Redis store
//     measures leases with the Redis server's clock, the bbolt store with the
//     process's wall clock, and both keep leases across restarts.
//   - Long poll: Pull with wait > 0 returns as soon as at least one message
//     can be leased: after an Enqueue (or Redrive) through any instance
//     sharing the store, typically within a millisecond or two, or when a
//     lease lapses. Otherwise it returns an empty, non-nil slice and a nil
//     error when wait passes, ctx's error as soon as ctx ends, and ErrClosed
//     as soon as the store is closed. A waiting Pull holds no connection.
//   - Receipts: Ack takes receipts. A full receipt ("<id>#<n>", Message.Receipt)
//     removes the message only while its delivery count is still n, so a stale
//     receipt cannot remove a message that was leased again. A bare id
//     ("<id>", Message.ID) removes the message if it has been delivered at
//     least once, whatever its current lease; the broker uses bare ids because
//     the wire protocol carries only message ids and every lease of an inbox
//     belongs to the same agent. Unknown, already acknowledged, stale or
//     malformed receipts, receipts naming a message never delivered, and
//     receipts naming a dead letter remove nothing and are not errors. Ack
//     returns how many messages it removed (a message named twice counts
//     once).
//   - Dead letters: when a lease lapses on a message already delivered
//     MaxDeliveries times, the message moves to the inbox's dead-letter list
//     (at the next Pull of that inbox) instead of being leased again. Dead
//     letters keep their body and delivery count, are listed oldest first,
//     can be re-driven (back to their original place in the ready list with
//     a delivery count of zero) and purged. Only Redrive, PurgeDeadLetters,
//     DeleteInbox and retention remove them.
//   - Retention: a message enqueued more than Options.Retention ago is removed
//     whether ready, leased or dead-lettered: at the latest by the next Pull
//     of its inbox, or by the store's sweeper (every sweep interval, default
//     one minute) for inboxes nobody pulls. An empty inbox leaves no key or
//     bucket behind.
//   - Capacity: Enqueue into an inbox holding Options.Capacity ready plus
//     leased messages fails with ErrInboxFull; nothing is evicted. Dead
//     letters do not count; Redrive may take an inbox over its capacity.
//   - Size: bodies up to MaxMessageSize (1 MiB) are stored byte for byte,
//     larger ones fail with ErrTooLarge.
//   - Stats: Ready counts messages that can be leased now (lapsed leases
//     included), Leased the messages under a live lease, DeadLetters the dead
//     letters; OldestAge is the age of the oldest ready or leased message.
//
// Durability depends on the store: with the Redis store, on Redis's
// persistence (with appendonly yes and appendfsync always nothing Enqueue
// returned for is lost on a crash of Redis or of its machine; with
// appendfsync everysec nothing on a crash of the redis-server process and up
// to about a second on an OS crash or power cut); with the bbolt store every
// call that changes state is fsynced before it returns. See redisstore.Inbox
// and boltstore.Inbox.
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
	// DefaultDedupWindow is how long EnqueueID remembers an id: longer than
	// Slack retries a webhook (three retries within about five minutes).
	DefaultDedupWindow = time.Hour
	// DefaultDedupCapacity bounds the ids EnqueueID remembers per inbox.
	DefaultDedupCapacity = 100000
	// MaxIDLength is the longest id EnqueueID accepts.
	MaxIDLength = 32
	// MaxMessageSize is the largest body Enqueue accepts.
	MaxMessageSize = 1 << 20
	// MaxPull is the largest batch one Pull returns.
	MaxPull = 100
	// MaxPullBytes bounds the bodies one Pull returns: it stops leasing once
	// they reach this many bytes, so a Pull returns at most MaxPullBytes +
	// MaxMessageSize bytes of bodies and always at least one message.
	MaxPullBytes = 8 << 20
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
	// DedupWindow is how long EnqueueID remembers an id after storing it.
	DedupWindow time.Duration
	// DedupCapacity is how many such ids it remembers per inbox.
	DedupCapacity int
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
	if o.DedupWindow <= 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	if o.DedupCapacity <= 0 {
		o.DedupCapacity = DefaultDedupCapacity
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
	// EnqueueID appends body to inbox under the caller's id (see
	// ValidateID) unless that id is in the inbox or was stored by EnqueueID
	// within Options.DedupWindow (see the package doc). It reports whether
	// this call stored a new message; false with a nil error means the id
	// was already there (possibly stored by an internal retry of this very
	// call). When it returns nil the message is stored as durably as the
	// store promises.
	EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error)
	// Pull leases up to max (1–MaxPull) messages in FIFO order (fewer when
	// their bodies reach MaxPullBytes). With wait > 0
	// and no message available it blocks until one is, wait passes, or ctx
	// ends; it then returns an empty slice and a nil error (or ctx's error
	// when ctx ended).
	Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]Message, error)
	// Ack removes the messages named by receipts and returns how many it
	// removed.
	Ack(ctx context.Context, inbox string, receipts []string) (int, error)
	// Stats reports the inbox's counters.
	Stats(ctx context.Context, inbox string) (Stats, error)
	// DeleteInbox removes the inbox and everything in it.
	DeleteInbox(ctx context.Context, inbox string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources and wakes every waiting Pull.
	Close() error
}

// DeadLetterAdmin administers the dead letters of a Store's inboxes (see
// the package doc). Both engines implement it; the broker does not use it.
type DeadLetterAdmin interface {
	// DeadLetters lists up to limit dead-lettered messages, oldest first.
	DeadLetters(ctx context.Context, inbox string, limit int) ([]Message, error)
	// Redrive moves the named dead letters (all of them when ids is empty)
	// back to the ready list with a delivery count of zero, and returns how
	// many it moved.
	Redrive(ctx context.Context, inbox string, ids []string) (int, error)
	// PurgeDeadLetters deletes every dead letter of inbox and returns how
	// many it deleted.
	PurgeDeadLetters(ctx context.Context, inbox string) (int, error)
}

var (
	inboxPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ValidateID reports whether id can be given to EnqueueID: 1–MaxIDLength
// bytes of [A-Za-z0-9_-].
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLength || !idPattern.MatchString(id) {
		return fmt.Errorf("%w: message id %q", ErrInvalidArgument, id)
	}
	return nil
}

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

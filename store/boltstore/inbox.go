package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/internal/inboxutil"
)

// InboxFileName is the database file OpenInbox creates in its directory.
const InboxFileName = "queue.db"

// Inbox is the Store for a single broker process without Redis: one
// bbolt file in a data directory.
//
// # Durability
//
// Every mutation (Enqueue, Pull, Ack, ...) is a bbolt transaction that is
// fsynced before the call returns, so nothing Enqueue returned for is lost
// when the process is killed (kill -9) or the machine loses power, provided
// the disk honours fsync. Concurrent calls are grouped into one transaction
// and one fsync by a self-clocking group commit (groupCommit): a call made
// while no commit is in flight commits at once, and the calls that arrive
// during a commit (enqueues, pulls' leases and acks alike) share the next
// one, which is what makes concurrent producers fast; a lone call pays one
// commit and no window. A Pull that finds nothing to lease, reclaim or expire uses a
// read-only transaction and writes nothing. Lease deadlines are stored as
// wall-clock timestamps of the process clock, so after a restart leased
// messages come back when their deadline passes. The freelist is not synced
// (bbolt rebuilds it when the file is opened), which does not affect
// durability.
//
// # Layout
//
// Bucket "inboxes" holds one bucket per inbox with sub-buckets m (seq → meta:
// enqueue time, delivery count, lease deadline, state, then the message id),
// r (ready seqs, in seq order), l (lease deadline ‖ seq), d (dead-letter
// seqs), i (message id → seq, for ids Enqueue chose; an EnqueueID copy is
// found through its remembered id, below), and two counters. Bucket
// "bodies" holds every inbox's bodies (seq → body). Seqs come from one
// store-wide sequence and give the FIFO order; they are internal.
//
// The layout is shaped by what a commit writes: bbolt rewrites every page
// a transaction touched, and a leaf holds at least two values, so a body
// appended to a bucket of its own per inbox rewrote that inbox's last two
// to four bodies, and every further per-message index cost a leaf (and its
// branch pages) per inbox. One bodies bucket shares its last leaf among
// all the messages of a transaction, whatever their inbox; buckets keyed by
// growing seqs fill their pages (FillPercent 1). Measured with
// BenchmarkBoltEnqueueDeep (docs/operations.md, Capacity). Data written by
// earlier versions is read as it is: bodies in the inbox's bucket b, ids in
// bucket n (seq → id) and i, remembered ids without a seq.
// Message ids are 128 random bits chosen at Enqueue (or the caller's, for
// EnqueueID), never derived from the sequence: restoring an older copy of
// queue.db, or starting over with an empty data directory, rewinds the
// sequence but cannot make an id a bridge has already seen come back.
// Messages written by versions that used the decimal sequence as id (no id
// anywhere) keep that id. An empty inbox's bucket is deleted.
//
// Bucket "ids" holds, per inbox, the ids EnqueueID stored within
// Options.DedupWindow: t (id → forget-at ‖ seq), x (forget-at ‖ id) and a counter;
// it outlives the inbox's own bucket and is trimmed by EnqueueID and the
// sweeper. The file is opened with an
// exclusive lock: a second process opening the same directory waits up to a
// second and then fails.
//
// Retention is applied on every Pull and, for inboxes nobody pulls, by a
// sweeper goroutine every sweep interval (default one minute). It assumes the
// process clock does not step backwards by more than a message's age.
type Inbox struct {
	db   *bolt.DB
	opts queue.Options
	cfg  inboxConfig
	log  *slog.Logger
	hub  *inboxutil.Hub
	gc   *groupCommit

	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

var (
	_ queue.Store           = (*Inbox)(nil)
	_ queue.DeadLetterAdmin = (*Inbox)(nil)
)

// InboxOption configures OpenInbox.
type InboxOption func(*inboxConfig)

type inboxConfig struct {
	batchDelay    time.Duration
	sweepInterval time.Duration
	logger        *slog.Logger
}

// DefaultBatchDelay is the default of WithBatchDelay: none, the group
// commit is self-clocking.
const DefaultBatchDelay = 0

// WithBatchDelay sets how long the write that leads a group commit waits
// for others to join its transaction before committing. Writes arriving
// while a commit is in flight join the next one without it, so the default
// (zero) already groups concurrent writers; a longer window trades a lone
// writer's latency for fewer fsyncs.
func WithBatchDelay(d time.Duration) InboxOption {
	return func(c *inboxConfig) { c.batchDelay = d }
}

// WithSweepInterval sets how often retention is applied to every inbox.
func WithSweepInterval(d time.Duration) InboxOption {
	return func(c *inboxConfig) { c.sweepInterval = d }
}

// WithLogger sets the logger for operational warnings.
func WithLogger(l *slog.Logger) InboxOption {
	return func(c *inboxConfig) { c.logger = l }
}

var (
	bktRoot   = []byte("inboxes")
	bktBodies = []byte("bodies") // top level: seq → body, all inboxes
	bktMeta   = []byte("m")
	bktBody   = []byte("b")
	bktReady  = []byte("r")
	bktLease  = []byte("l")
	bktDead   = []byte("d")
	bktID     = []byte("i")
	bktName   = []byte("n")
	bktIDs    = []byte("ids") // top level: ids remembered by EnqueueID
	bktTomb   = []byte("t")
	bktTombX  = []byte("x")
	keyTombN  = []byte("count")
	keyLive   = []byte("live") // ready + leased count
	keyDeadN  = []byte("dead") // dead-letter count
)

// initialMmapSize is the address space mapped at open (not memory: pages
// are only read in as used), so a growing file is not remapped, which
// blocks every transaction, until it passes this size.
const initialMmapSize = 256 << 20

// appendFill is the FillPercent of the buckets keyed by growing seqs.
const appendFill = 1.0

// Message states in meta.
const (
	stReady  = 0
	stLeased = 1
	stDead   = 2
)

// OpenInbox opens (creating if needed) the store in dir.
func OpenInbox(dir string, opts queue.Options, options ...InboxOption) (*Inbox, error) {
	cfg := inboxConfig{batchDelay: DefaultBatchDelay, sweepInterval: time.Minute, logger: slog.Default()}
	for _, o := range options {
		o(&cfg)
	}
	if cfg.sweepInterval <= 0 {
		cfg.sweepInterval = time.Minute
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: creating %s: %w", dir, err)
	}
	path := filepath.Join(dir, InboxFileName)
	// The freelist is not written on every commit (it is rebuilt from the
	// pages when the file is opened), which roughly halves the bytes each
	// small transaction writes; the map freelist keeps large ones fast.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize})
	if err != nil {
		return nil, fmt.Errorf("queue: opening %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bktRoot); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bktBodies); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bktIDs)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("queue: initialising %s: %w", path, err)
	}
	s := &Inbox{
		db:     db,
		opts:   opts.WithDefaults(),
		cfg:    cfg,
		log:    cfg.logger.With("component", "queue.bolt"),
		hub:    inboxutil.NewHub(),
		gc:     &groupCommit{db: db, linger: cfg.batchDelay},
		closed: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.sweeper()
	return s, nil
}

// meta is the fixed-size record of one message.
type meta struct {
	enq        int64 // unix ns
	deliveries uint32
	deadline   int64 // unix ns, while leased
	state      byte
}

const metaLen = 8 + 4 + 8 + 1

// encode returns the meta record of a message with the given id: the fixed
// fields, then the id. Records written before ids moved into meta are the
// fixed fields alone (the id is in bucket n, or the decimal seq).
func (m meta) encode(id []byte) []byte {
	b := make([]byte, metaLen, metaLen+len(id))
	binary.BigEndian.PutUint64(b[0:], uint64(m.enq))
	binary.BigEndian.PutUint32(b[8:], m.deliveries)
	binary.BigEndian.PutUint64(b[12:], uint64(m.deadline))
	b[20] = m.state
	return append(b, id...)
}

// reencode is encode keeping the id of the record old.
func (m meta) reencode(old []byte) []byte { return m.encode(metaID(old)) }

// metaID returns the id a meta record carries (nil for an old record).
func metaID(v []byte) []byte {
	if len(v) <= metaLen {
		return nil
	}
	return v[metaLen:]
}

func decodeMeta(b []byte) (meta, bool) {
	if len(b) < metaLen {
		return meta{}, false
	}
	return meta{
		enq:        int64(binary.BigEndian.Uint64(b[0:])),
		deliveries: binary.BigEndian.Uint32(b[8:]),
		deadline:   int64(binary.BigEndian.Uint64(b[12:])),
		state:      b[20],
	}, true
}

func seqKey(seq uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, seq)
	return b
}

func leaseKey(deadline int64, seq uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(deadline))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

// parseID turns a message id back into its sequence number; only the
// canonical decimal form is accepted.
func parseID(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return 0, false
	}
	return n, true
}

// ibx is one inbox's buckets inside a transaction. i and n are nil in a
// read-only transaction on an inbox written by an older version.
type ibx struct {
	root, b, m, body, r, l, d, i, n *bolt.Bucket
	bodies                          *bolt.Bucket // top-level bodies
	name                            []byte
}

// openInbox returns the inbox's buckets, or nil when the inbox does not
// exist and create is false.
func openInbox(tx *bolt.Tx, inbox string, create bool) (*ibx, error) {
	root := tx.Bucket(bktRoot)
	if root == nil {
		return nil, errors.New("queue: root bucket missing")
	}
	name := []byte(inbox)
	b := root.Bucket(name)
	if b == nil {
		if !create {
			return nil, nil
		}
		var err error
		if b, err = root.CreateBucket(name); err != nil {
			return nil, err
		}
		for _, n := range [][]byte{bktMeta, bktBody, bktReady, bktLease, bktDead, bktID, bktName} {
			if _, err := b.CreateBucket(n); err != nil {
				return nil, err
			}
		}
	} else if tx.Writable() && (b.Bucket(bktID) == nil || b.Bucket(bktName) == nil) {
		// An inbox written before ids were random.
		for _, n := range [][]byte{bktID, bktName} {
			if _, err := b.CreateBucketIfNotExists(n); err != nil {
				return nil, err
			}
		}
	}
	x := &ibx{root: root, b: b, name: name, bodies: tx.Bucket(bktBodies), m: b.Bucket(bktMeta), body: b.Bucket(bktBody),
		r: b.Bucket(bktReady), l: b.Bucket(bktLease), d: b.Bucket(bktDead),
		i: b.Bucket(bktID), n: b.Bucket(bktName)}
	if x.m == nil || x.body == nil || x.r == nil || x.l == nil || x.d == nil || x.bodies == nil {
		return nil, fmt.Errorf("queue: inbox %s: bucket layout damaged", inbox)
	}
	if tx.Writable() {
		// Keys grow (seqs, deadlines): pack the pages an append splits
		// off instead of leaving them half empty.
		for _, b := range []*bolt.Bucket{x.m, x.bodies, x.r, x.l, x.d} {
			b.FillPercent = appendFill
		}
	}
	return x, nil
}

// idOf returns the message id of seq, whose meta record is v.
func (x *ibx) idOf(seq uint64, v []byte) string {
	if id := metaID(v); id != nil {
		return string(id)
	}
	if x.n != nil { // written before ids moved into meta
		if v := x.n.Get(seqKey(seq)); v != nil {
			return string(v)
		}
	}
	return strconv.FormatUint(seq, 10) // written before ids were random
}

// holds reports whether the inbox holds seq under id.
func (x *ibx) holds(seq uint64, id string) bool {
	v := x.m.Get(seqKey(seq))
	return v != nil && x.idOf(seq, v) == id
}

// seqOf resolves a message id to its seq. Messages stored by EnqueueID
// are found through the remembered id (bucket ids, which records the seq),
// the others through bucket i.
func (x *ibx) seqOf(tx *bolt.Tx, id string) (uint64, bool) {
	if x.i != nil {
		if v := x.i.Get([]byte(id)); len(v) == 8 {
			return binary.BigEndian.Uint64(v), true
		}
	}
	if _, seq, ok := remembered(tx, string(x.name), id); ok && x.holds(seq, id) {
		return seq, true
	}
	seq, ok := parseID(id)
	if !ok || metaID(x.m.Get(seqKey(seq))) != nil || (x.n != nil && x.n.Get(seqKey(seq)) != nil) {
		return 0, false
	}
	return seq, true
}

func (x *ibx) counter(k []byte) int64 {
	v := x.b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func (x *ibx) add(k []byte, delta int64) error {
	return x.b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(x.counter(k)+delta)))
}

// getBody returns the body stored under seq key k: in the top-level
// bucket bodies, or in the inbox's own bucket b where versions before it
// stored them.
func (x *ibx) getBody(k []byte) []byte {
	if v := x.bodies.Get(k); v != nil {
		return v
	}
	return x.body.Get(k)
}

// delBody deletes the body stored under k (deleting an absent key only
// looks).
func (x *ibx) delBody(k []byte) error {
	if err := x.bodies.Delete(k); err != nil {
		return err
	}
	return x.body.Delete(k)
}

// unlink removes seq from the ready, lease or dead index, per its state.
func (x *ibx) unlink(seq uint64, md meta) error {
	switch md.state {
	case stReady:
		return x.r.Delete(seqKey(seq))
	case stLeased:
		return x.l.Delete(leaseKey(md.deadline, seq))
	default:
		return x.d.Delete(seqKey(seq))
	}
}

// drop removes a message entirely; v is its meta record.
func (x *ibx) drop(seq uint64, md meta, v []byte) error {
	k := seqKey(seq)
	if err := x.unlink(seq, md); err != nil {
		return err
	}
	if id := metaID(v); id != nil && x.i != nil {
		// Deleting an absent key (the id of an EnqueueID copy, found
		// through the remembered ids) only looks.
		if err := x.i.Delete(bytes.Clone(id)); err != nil {
			return err
		}
	}
	if err := x.m.Delete(k); err != nil {
		return err
	}
	if err := x.delBody(k); err != nil {
		return err
	}
	if x.n != nil {
		if id := x.n.Get(k); id != nil {
			if err := x.i.Delete(id); err != nil {
				return err
			}
			if err := x.n.Delete(k); err != nil {
				return err
			}
		}
	}
	if md.state == stDead {
		return x.add(keyDeadN, -1)
	}
	return x.add(keyLive, -1)
}

// deadletter moves a ready or leased message (meta record v) to the dead
// letters.
func (x *ibx) deadletter(seq uint64, md meta, v []byte) error {
	if err := x.unlink(seq, md); err != nil {
		return err
	}
	md.state, md.deadline = stDead, 0
	if err := x.m.Put(seqKey(seq), md.reencode(v)); err != nil {
		return err
	}
	if err := x.d.Put(seqKey(seq), nil); err != nil {
		return err
	}
	if err := x.add(keyLive, -1); err != nil {
		return err
	}
	return x.add(keyDeadN, 1)
}

// retain drops messages enqueued before cutoff (ids grow with enqueue time).
func (x *ibx) retain(cutoff int64) error {
	c := x.m.Cursor()
	for k, v := c.First(); k != nil; k, v = c.First() {
		md, ok := decodeMeta(v)
		if ok && md.enq >= cutoff {
			return nil
		}
		if err := x.drop(binary.BigEndian.Uint64(k), md, v); err != nil {
			return err
		}
	}
	return nil
}

// cleanup deletes the inbox's bucket when it holds nothing.
func (x *ibx) cleanup() error {
	if x.counter(keyLive) == 0 && x.counter(keyDeadN) == 0 {
		if k, _ := x.m.Cursor().First(); k == nil {
			return x.root.DeleteBucket(x.name)
		}
	}
	return nil
}

// Enqueue implements queue.Store.
func (s *Inbox) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	id := inboxutil.NewID()
	if _, err := s.put(ctx, inbox, id, false, body); err != nil {
		return "", err
	}
	return id, nil
}

// EnqueueID implements queue.Store.
func (s *Inbox) EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error) {
	if err := queue.ValidateID(id); err != nil {
		return false, err
	}
	return s.put(ctx, inbox, id, true, body)
}

// put stores body under id; keyed (EnqueueID) makes it a no-op for an id in
// the inbox or remembered, and remembers id.
func (s *Inbox) put(ctx context.Context, inbox, id string, keyed bool, body []byte) (bool, error) {
	if err := inboxutil.CheckEnqueue(inbox, body); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if s.isClosed() {
		return false, queue.ErrClosed
	}
	var stored, full bool
	err := s.gc.update(func(tx *bolt.Tx) error {
		var err error
		stored, full, err = s.putTx(tx, inbox, id, keyed, body)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("queue: enqueue into %s: %w", inbox, err)
	}
	if full {
		return false, fmt.Errorf("%w: %s holds %d messages", queue.ErrInboxFull, inbox, s.opts.Capacity)
	}
	if stored {
		s.hub.Wake(inbox)
	}
	return stored, nil
}

// putTx is put's transaction: it stores body under id unless keyed and id
// is in the inbox or remembered (stored false), or the inbox is full (full).
func (s *Inbox) putTx(tx *bolt.Tx, inbox, id string, keyed bool, body []byte) (stored, full bool, err error) {
	x, err := openInbox(tx, inbox, true)
	if err != nil {
		return false, false, err
	}
	now := time.Now().UnixNano()
	if keyed {
		if x.i.Get([]byte(id)) != nil {
			return false, false, nil
		}
		until, seq, ok := remembered(tx, inbox, id)
		if ok && x.holds(seq, id) {
			return false, false, nil
		}
		if until > now {
			return false, false, x.cleanup()
		}
	}
	if x.counter(keyLive) >= int64(s.opts.Capacity) {
		if err := x.retain(now - int64(s.opts.Retention)); err != nil {
			return false, false, err
		}
		if x.counter(keyLive) >= int64(s.opts.Capacity) {
			return false, true, x.cleanup()
		}
	}
	seq, err := x.root.NextSequence()
	if err != nil {
		return false, false, err
	}
	k := seqKey(seq)
	if err := x.m.Put(k, meta{enq: now, state: stReady}.encode([]byte(id))); err != nil {
		return false, false, err
	}
	if err := x.bodies.Put(k, body); err != nil {
		return false, false, err
	}
	if err := x.r.Put(k, nil); err != nil {
		return false, false, err
	}
	if keyed {
		// The remembered id records seq: no entry in bucket i.
		if err := s.remember(tx, inbox, id, now, seq); err != nil {
			return false, false, err
		}
	} else if err := x.i.Put([]byte(id), k); err != nil {
		return false, false, err
	}
	return true, false, x.add(keyLive, 1)
}

// needsWrite reports, from a read transaction, whether a pull would change
// anything, and otherwise how long until the earliest lease lapses (-1: none).
func (s *Inbox) needsWrite(inbox string) (bool, time.Duration, error) {
	need, next := false, time.Duration(-1)
	err := s.db.View(func(tx *bolt.Tx) error {
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		now := time.Now().UnixNano()
		if k, _ := x.r.Cursor().First(); k != nil {
			need = true
			return nil
		}
		if k, _ := x.l.Cursor().First(); k != nil {
			deadline := int64(binary.BigEndian.Uint64(k))
			if deadline <= now {
				need = true
				return nil
			}
			next = time.Duration(deadline - now)
		}
		if k, v := x.m.Cursor().First(); k != nil {
			if md, ok := decodeMeta(v); !ok || md.enq < now-int64(s.opts.Retention) {
				need = true
			}
		} else {
			need = true // empty inbox bucket: let the write path delete it
		}
		return nil
	})
	return need, next, err
}

// pullOnce leases up to max messages; next is as for needsWrite.
func (s *Inbox) pullOnce(inbox string, n int) ([]queue.Message, time.Duration, error) {
	need, next, err := s.needsWrite(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("queue: pull from %s: %w", inbox, err)
	}
	if !need {
		return []queue.Message{}, next, nil
	}
	var msgs []queue.Message
	err = s.gc.update(func(tx *bolt.Tx) error {
		msgs, next = msgs[:0], -1
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		now := time.Now().UnixNano()
		if err := x.retain(now - int64(s.opts.Retention)); err != nil {
			return err
		}
		maxd := uint32(s.opts.MaxDeliveries)
		// Reclaim lapsed leases.
		lc := x.l.Cursor()
		for k, _ := lc.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= now; k, _ = lc.First() {
			seq := binary.BigEndian.Uint64(k[8:])
			sk := seqKey(seq)
			v := x.m.Get(sk)
			md, ok := decodeMeta(v)
			if !ok {
				if err := x.l.Delete(k); err != nil {
					return err
				}
				continue
			}
			if md.deliveries >= maxd {
				if err := x.deadletter(seq, md, v); err != nil {
					return err
				}
				continue
			}
			if err := x.l.Delete(k); err != nil {
				return err
			}
			md.state, md.deadline = stReady, 0
			if err := x.m.Put(sk, md.reencode(v)); err != nil {
				return err
			}
			if err := x.r.Put(sk, nil); err != nil {
				return err
			}
		}
		// Lease ready messages in order.
		deadline := now + int64(s.opts.Lease)
		rc := x.r.Cursor()
		size := 0
		for k, _ := rc.First(); k != nil && len(msgs) < n && size < queue.MaxPullBytes; k, _ = rc.First() {
			seq := binary.BigEndian.Uint64(k)
			sk := seqKey(seq)
			v := x.m.Get(sk)
			md, ok := decodeMeta(v)
			if !ok {
				if err := x.r.Delete(k); err != nil {
					return err
				}
				continue
			}
			if md.deliveries >= maxd {
				if err := x.deadletter(seq, md, v); err != nil {
					return err
				}
				continue
			}
			if err := x.r.Delete(sk); err != nil {
				return err
			}
			id := x.idOf(seq, v)
			md.state, md.deadline = stLeased, deadline
			md.deliveries++
			if err := x.m.Put(sk, md.reencode(v)); err != nil {
				return err
			}
			if err := x.l.Put(leaseKey(deadline, seq), nil); err != nil {
				return err
			}
			body := bytes.Clone(x.getBody(sk))
			size += len(body)
			msgs = append(msgs, queue.Message{
				ID:         id,
				Body:       body,
				Deliveries: int(md.deliveries),
				EnqueuedAt: time.Unix(0, md.enq),
				Receipt:    queue.FormatReceipt(id, int(md.deliveries)),
			})
		}
		if k, _ := x.l.Cursor().First(); k != nil {
			next = max(time.Duration(int64(binary.BigEndian.Uint64(k))-now), 0)
		}
		return x.cleanup()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("queue: pull from %s: %w", inbox, err)
	}
	if msgs == nil {
		msgs = []queue.Message{}
	}
	return msgs, next, nil
}

// Pull implements queue.Store.
func (s *Inbox) Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]queue.Message, error) {
	if err := inboxutil.CheckPull(inbox, max, wait); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, queue.ErrClosed
	}
	if wait <= 0 {
		msgs, _, err := s.pullOnce(inbox, max)
		return msgs, s.closedErr(err)
	}
	w := s.hub.Add(inbox)
	defer s.hub.Remove(inbox, w)
	end := time.Now().Add(wait)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		msgs, next, err := s.pullOnce(inbox, max)
		if err != nil || len(msgs) > 0 {
			return msgs, s.closedErr(err)
		}
		left := time.Until(end)
		if left <= 0 {
			return msgs, nil
		}
		w.Arm()
		d := left
		if next >= 0 {
			d = min(d, next+time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, queue.ErrClosed
		case <-w.C:
		case <-timer.C:
		}
	}
}

// Ack implements queue.Store.
func (s *Inbox) Ack(ctx context.Context, inbox string, receipts []string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.isClosed() {
		return 0, queue.ErrClosed
	}
	rs := inboxutil.ParseReceipts(receipts)
	if len(rs) == 0 {
		return 0, nil
	}
	var removed int
	err := s.gc.update(func(tx *bolt.Tx) error {
		removed = 0
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		for _, r := range rs {
			seq, ok := x.seqOf(tx, r.ID)
			if !ok {
				continue
			}
			v := x.m.Get(seqKey(seq))
			md, ok := decodeMeta(v)
			if !ok || md.state == stDead || md.deliveries == 0 ||
				(r.Deliveries != 0 && uint32(r.Deliveries) != md.deliveries) {
				continue
			}
			if err := x.drop(seq, md, v); err != nil {
				return err
			}
			removed++
		}
		if removed > 0 {
			return x.cleanup()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: ack in %s: %w", inbox, err)
	}
	return removed, nil
}

// Stats implements queue.Store. Lapsed leases count as ready.
func (s *Inbox) Stats(ctx context.Context, inbox string) (queue.Stats, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return queue.Stats{}, err
	}
	var st queue.Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		now := time.Now().UnixNano()
		live := int(x.counter(keyLive))
		c := x.l.Cursor()
		for k, _ := c.Last(); k != nil && int64(binary.BigEndian.Uint64(k)) > now; k, _ = c.Prev() {
			st.Leased++
		}
		st.Ready = live - st.Leased
		st.DeadLetters = int(x.counter(keyDeadN))
		mc := x.m.Cursor()
		for k, v := mc.First(); k != nil; k, v = mc.Next() {
			if md, ok := decodeMeta(v); ok && md.state != stDead {
				st.OldestAge = max(time.Duration(now-md.enq), 0)
				break
			}
		}
		return nil
	})
	if err != nil {
		return queue.Stats{}, fmt.Errorf("queue: stats of %s: %w", inbox, err)
	}
	return st, nil
}

// DeadLetters implements queue.Store.
func (s *Inbox) DeadLetters(ctx context.Context, inbox string, limit int) ([]queue.Message, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", queue.ErrInvalidArgument, limit)
	}
	out := []queue.Message{}
	err := s.db.View(func(tx *bolt.Tx) error {
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		c := x.d.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			v := x.m.Get(k)
			md, _ := decodeMeta(v)
			id := x.idOf(binary.BigEndian.Uint64(k), v)
			out = append(out, queue.Message{ID: id, Body: bytes.Clone(x.getBody(k)), Deliveries: int(md.deliveries),
				EnqueuedAt: time.Unix(0, md.enq), Receipt: queue.FormatReceipt(id, int(md.deliveries))})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", inbox, err)
	}
	return out, nil
}

// Redrive implements queue.Store. Redriven messages do not count against Capacity
// when moved; they count afterwards like any ready message.
func (s *Inbox) Redrive(ctx context.Context, inbox string, ids []string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	var moved int
	err := s.gc.update(func(tx *bolt.Tx) error {
		moved = 0
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		var seqs []uint64
		if len(ids) == 0 {
			c := x.d.Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				seqs = append(seqs, binary.BigEndian.Uint64(k))
			}
		}
		for _, id := range ids {
			if seq, ok := x.seqOf(tx, id); ok {
				seqs = append(seqs, seq)
			}
		}
		for _, seq := range seqs {
			k := seqKey(seq)
			v := x.m.Get(k)
			md, ok := decodeMeta(v)
			if !ok || md.state != stDead {
				continue
			}
			if err := x.d.Delete(k); err != nil {
				return err
			}
			md.state, md.deliveries, md.deadline = stReady, 0, 0
			if err := x.m.Put(k, md.reencode(v)); err != nil {
				return err
			}
			if err := x.r.Put(k, nil); err != nil {
				return err
			}
			if err := x.add(keyDeadN, -1); err != nil {
				return err
			}
			if err := x.add(keyLive, 1); err != nil {
				return err
			}
			moved++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("queue: redrive in %s: %w", inbox, err)
	}
	if moved > 0 {
		s.hub.Wake(inbox)
	}
	return moved, nil
}

// PurgeDeadLetters implements queue.Store.
func (s *Inbox) PurgeDeadLetters(ctx context.Context, inbox string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	var purged int
	err := s.gc.update(func(tx *bolt.Tx) error {
		purged = 0
		x, err := openInbox(tx, inbox, false)
		if err != nil || x == nil {
			return err
		}
		c := x.d.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.First() {
			seq := binary.BigEndian.Uint64(k)
			v := x.m.Get(k)
			md, ok := decodeMeta(v)
			if !ok {
				md = meta{state: stDead}
			}
			if err := x.drop(seq, md, v); err != nil {
				return err
			}
			purged++
		}
		return x.cleanup()
	})
	if err != nil {
		return 0, fmt.Errorf("queue: purge dead letters of %s: %w", inbox, err)
	}
	return purged, nil
}

// DeleteInbox implements queue.Store.
func (s *Inbox) DeleteInbox(ctx context.Context, inbox string) error {
	if err := queue.ValidateInbox(inbox); err != nil {
		return err
	}
	err := s.gc.update(func(tx *bolt.Tx) error {
		if ids := tx.Bucket(bktIDs); ids.Bucket([]byte(inbox)) != nil {
			if err := ids.DeleteBucket([]byte(inbox)); err != nil {
				return err
			}
		}
		x, err := openInbox(tx, inbox, false)
		if err != nil {
			return tx.Bucket(bktRoot).DeleteBucket([]byte(inbox)) // damaged: drop what is there
		}
		if x == nil {
			return nil
		}
		var keys [][]byte
		if err := x.m.ForEach(func(k, _ []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := x.bodies.Delete(k); err != nil {
				return err
			}
		}
		return x.root.DeleteBucket(x.name)
	})
	if err != nil {
		return fmt.Errorf("queue: delete inbox %s: %w", inbox, err)
	}
	return nil
}

// Ping implements queue.Store.
func (s *Inbox) Ping(ctx context.Context) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	return nil
}

// Close wakes every waiting Pull (which returns ErrClosed), stops the sweeper
// and closes the database file.
func (s *Inbox) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		s.wg.Wait()
		err = s.db.Close()
	})
	if err != nil {
		return fmt.Errorf("queue: closing bolt store: %w", err)
	}
	return nil
}

// closedErr returns ErrClosed for an error caused by Close racing the call
// (the database file is closed after s.closed), and err otherwise.
func (s *Inbox) closedErr(err error) error {
	if err != nil && s.isClosed() {
		return queue.ErrClosed
	}
	return err
}

func (s *Inbox) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

func (s *Inbox) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		if _, err := s.Sweep(context.Background()); err != nil {
			s.log.Warn("sweep failed", "err", err)
		}
	}
}

// Sweep applies retention to every inbox and deletes empty ones; it returns
// how many inboxes it removed. The sweeper goroutine calls it periodically.
func (s *Inbox) Sweep(ctx context.Context) (int, error) {
	var names []string
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktRoot).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	}); err != nil {
		return 0, fmt.Errorf("queue: sweep: listing inboxes: %w", err)
	}
	if err := s.sweepRemembered(); err != nil {
		return 0, fmt.Errorf("queue: sweep: %w", err)
	}
	removed := 0
	for _, inbox := range names {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if s.isClosed() {
			return removed, queue.ErrClosed
		}
		cutoff := time.Now().UnixNano() - int64(s.opts.Retention)
		stale := false
		if err := s.db.View(func(tx *bolt.Tx) error {
			x, err := openInbox(tx, inbox, false)
			if err != nil || x == nil {
				return err
			}
			k, v := x.m.Cursor().First()
			md, ok := decodeMeta(v)
			stale = k == nil || !ok || md.enq < cutoff
			return nil
		}); err != nil {
			return removed, fmt.Errorf("queue: sweep %s: %w", inbox, err)
		}
		if !stale {
			continue
		}
		gone := false
		err := s.gc.update(func(tx *bolt.Tx) error {
			gone = false
			x, err := openInbox(tx, inbox, false)
			if err != nil || x == nil {
				return err
			}
			if err := x.retain(time.Now().UnixNano() - int64(s.opts.Retention)); err != nil {
				return err
			}
			if err := x.cleanup(); err != nil {
				return err
			}
			gone = x.root.Bucket(x.name) == nil
			return nil
		})
		if err != nil {
			return removed, fmt.Errorf("queue: sweep %s: %w", inbox, err)
		}
		if gone {
			removed++
		}
	}
	return removed, nil
}

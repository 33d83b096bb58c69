package boltstore

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file holds the bbolt store's memory of ids stored by EnqueueID
// (bucket "ids", see Inbox).
//
// An entry of t is forget-at (unix ns), then the seq the id was stored
// under (entries written before that are forget-at alone). The seq is how
// Ack and Redrive find a message stored by EnqueueID, which has no entry in
// its inbox's bucket i: one random-key index per message instead of two.
// When an entry is forgotten while its message is still in the inbox, the
// id moves to bucket i (see trimRemembered).

// remembered returns when the remembered id of inbox is forgotten (unix
// ns; 0 when it is not remembered) and, when the entry records one, the
// seq it was stored under.
func remembered(tx *bolt.Tx, inbox, id string) (until int64, seq uint64, hasSeq bool) {
	b := tx.Bucket(bktIDs).Bucket([]byte(inbox))
	if b == nil {
		return 0, 0, false
	}
	t := b.Bucket(bktTomb)
	if t == nil {
		return 0, 0, false
	}
	return decodeTomb(t.Get([]byte(id)))
}

func decodeTomb(v []byte) (until int64, seq uint64, hasSeq bool) {
	switch len(v) {
	case 8:
		return int64(binary.BigEndian.Uint64(v)), 0, false
	case 16:
		return int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint64(v[8:]), true
	}
	return 0, 0, false
}

// remember records id as stored in inbox under seq at now, forgetting
// expired ids and the oldest ones beyond Options.DedupCapacity.
func (s *Inbox) remember(tx *bolt.Tx, inbox, id string, now int64, seq uint64) error {
	b, err := tx.Bucket(bktIDs).CreateBucketIfNotExists([]byte(inbox))
	if err != nil {
		return err
	}
	t, err := b.CreateBucketIfNotExists(bktTomb)
	if err != nil {
		return err
	}
	xb, err := b.CreateBucketIfNotExists(bktTombX)
	if err != nil {
		return err
	}
	xb.FillPercent = appendFill // keyed by forget-at, which grows
	n := counterOf(b)
	if old, _, _ := decodeTomb(t.Get([]byte(id))); old != 0 {
		// An expired entry of the same id (whose message, if any, is
		// gone: putTx checked): replace it.
		if err := xb.Delete(tombKey(old, id)); err != nil {
			return err
		}
		n--
	}
	until := now + int64(s.opts.DedupWindow)
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(until))
	if err := t.Put([]byte(id), binary.BigEndian.AppendUint64(v, seq)); err != nil {
		return err
	}
	if err := xb.Put(tombKey(until, id), nil); err != nil {
		return err
	}
	n++
	if n, err = trimRemembered(tx, inbox, t, xb, n, now, int64(s.opts.DedupCapacity)); err != nil {
		return err
	}
	return b.Put(keyTombN, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// trimRemembered forgets ids of inbox whose time is up, then the oldest
// beyond limit, and returns the new count. An id whose message is still in
// the inbox moves to the inbox's bucket i, so that it can still be acked.
func trimRemembered(tx *bolt.Tx, inbox string, t, xb *bolt.Bucket, n, now, limit int64) (int64, error) {
	var x *ibx
	c := xb.Cursor()
	for k, _ := c.First(); len(k) > 8; k, _ = c.First() {
		if int64(binary.BigEndian.Uint64(k)) > now && n <= limit {
			break
		}
		if _, seq, ok := decodeTomb(t.Get(k[8:])); ok {
			if x == nil {
				var err error
				if x, err = openInbox(tx, inbox, false); err != nil {
					return n, err
				}
			}
			if x != nil && x.holds(seq, string(k[8:])) {
				if err := x.i.Put(bytes.Clone(k[8:]), seqKey(seq)); err != nil {
					return n, err
				}
			}
		}
		if err := t.Delete(k[8:]); err != nil {
			return n, err
		}
		if err := xb.Delete(k); err != nil {
			return n, err
		}
		n--
	}
	return n, nil
}

// sweepRemembered forgets expired ids of every inbox and deletes the
// buckets left empty.
func (s *Inbox) sweepRemembered() error {
	// Find, read-only, the inboxes with something to forget, so that an
	// idle sweep writes nothing.
	var names [][]byte
	now, limit := time.Now().UnixNano(), int64(s.opts.DedupCapacity)
	if err := s.db.View(func(tx *bolt.Tx) error {
		ids := tx.Bucket(bktIDs)
		return ids.ForEachBucket(func(k []byte) error {
			b := ids.Bucket(k)
			xb := b.Bucket(bktTombX)
			if xb != nil && counterOf(b) <= limit {
				if first, _ := xb.Cursor().First(); len(first) > 8 && int64(binary.BigEndian.Uint64(first)) > now {
					return nil
				}
			}
			names = append(names, append([]byte(nil), k...))
			return nil
		})
	}); err != nil {
		return err
	}
	for _, name := range names {
		if err := s.gc.update(func(tx *bolt.Tx) error {
			ids := tx.Bucket(bktIDs)
			b := ids.Bucket(name)
			if b == nil {
				return nil
			}
			t, xb := b.Bucket(bktTomb), b.Bucket(bktTombX)
			if t == nil || xb == nil {
				return ids.DeleteBucket(name)
			}
			n, err := trimRemembered(tx, string(name), t, xb, counterOf(b), time.Now().UnixNano(), int64(s.opts.DedupCapacity))
			if err != nil {
				return err
			}
			if n <= 0 {
				return ids.DeleteBucket(name)
			}
			return b.Put(keyTombN, binary.BigEndian.AppendUint64(nil, uint64(n)))
		}); err != nil {
			return err
		}
	}
	return nil
}

func counterOf(b *bolt.Bucket) int64 {
	v := b.Get(keyTombN)
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

func tombKey(until int64, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(until))
	return append(k, id...)
}

package boltstore

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// This file holds the bbolt store's memory of ids stored by EnqueueID
// (bucket "ids", see Inbox).

// rememberedUntil returns when the remembered id of inbox is forgotten (unix
// ns), 0 when it is not remembered.
func rememberedUntil(tx *bolt.Tx, inbox, id string) int64 {
	b := tx.Bucket(bktIDs).Bucket([]byte(inbox))
	if b == nil {
		return 0
	}
	t := b.Bucket(bktTomb)
	if t == nil {
		return 0
	}
	v := t.Get([]byte(id))
	if len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// remember records id as stored in inbox at now, forgetting expired ids and
// the oldest ones beyond Options.DedupCapacity.
func (s *Inbox) remember(tx *bolt.Tx, inbox, id string, now int64) error {
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
	n := counterOf(b)
	if old := t.Get([]byte(id)); len(old) == 8 {
		// An expired entry of the same id: replace it.
		if err := xb.Delete(tombKey(int64(binary.BigEndian.Uint64(old)), id)); err != nil {
			return err
		}
		n--
	}
	until := now + int64(s.opts.DedupWindow)
	if err := t.Put([]byte(id), binary.BigEndian.AppendUint64(nil, uint64(until))); err != nil {
		return err
	}
	if err := xb.Put(tombKey(until, id), nil); err != nil {
		return err
	}
	n++
	if n, err = trimRemembered(t, xb, n, now, int64(s.opts.DedupCapacity)); err != nil {
		return err
	}
	return b.Put(keyTombN, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// trimRemembered forgets ids whose time is up, then the oldest beyond limit,
// and returns the new count.
func trimRemembered(t, xb *bolt.Bucket, n, now, limit int64) (int64, error) {
	c := xb.Cursor()
	for k, _ := c.First(); len(k) > 8; k, _ = c.First() {
		if int64(binary.BigEndian.Uint64(k)) > now && n <= limit {
			break
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
		if err := s.db.Batch(func(tx *bolt.Tx) error {
			ids := tx.Bucket(bktIDs)
			b := ids.Bucket(name)
			if b == nil {
				return nil
			}
			t, xb := b.Bucket(bktTomb), b.Bucket(bktTombX)
			if t == nil || xb == nil {
				return ids.DeleteBucket(name)
			}
			n, err := trimRemembered(t, xb, counterOf(b), time.Now().UnixNano(), int64(s.opts.DedupCapacity))
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

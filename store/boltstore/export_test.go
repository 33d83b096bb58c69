package boltstore

import bolt "go.etcd.io/bbolt"

// waiting reports how many Pulls of this process wait on inbox.
func (s *Inbox) waiting(inbox string) int { return s.hub.Count(inbox) }

// inboxCount reports how many inbox buckets exist.
func (s *Inbox) inboxCount() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bktRoot).ForEachBucket(func([]byte) error { n++; return nil })
	})
	return n, err
}

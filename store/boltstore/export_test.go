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

// commits reports how many write transactions the inbox's group commit
// has committed.
func (s *Inbox) commits() int64 { return s.gc.commits.Load() }

// pagesWritten reports how many writes (a page, or a run of overflow
// pages, or a meta page) bbolt has made to the inbox file.
func (s *Inbox) pagesWritten() int64 {
	st := s.db.Stats()
	return st.TxStats.GetWrite()
}

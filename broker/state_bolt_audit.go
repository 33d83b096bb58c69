package broker

import bolt "go.etcd.io/bbolt"

// DB returns the bbolt database of s, for stores that share its file (the
// audit log's boltstore.AuditStore). The caller must not close it.
func (s *BoltState) DB() *bolt.DB { return s.db }

package boltstore

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// boltCountAgents counts the agents of org inside tx.
func boltCountAgents(tx *bolt.Tx, org string) int {
	prefix := boltAgentOrgKey(org, "")
	ab := tx.Bucket(boltBktAgent)
	n := 0
	c := tx.Bucket(boltBktAgentOrg).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if ab.Get(k[len(prefix):]) != nil {
			n++
		}
	}
	return n
}

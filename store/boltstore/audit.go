package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sealrelay/sealrelay/audit"
)

// AuditStore implements audit.Store in a bbolt file: under its top bucket,
// one bucket per chain holding a "rec" and a "cp" bucket whose keys are
// 8-byte big-endian positions (bbolt's bucket sequence), so iteration order
// is append order. Every Append is one fsynced read-write transaction.
type AuditStore struct {
	db     *bolt.DB
	bucket []byte
}

var (
	auditBktRecords     = []byte("rec")
	auditBktCheckpoints = []byte("cp")
)

// NewAuditStore returns an AuditStore on db under the top-level bucket
// named bucket (created on first write). The caller owns db.
func NewAuditStore(db *bolt.DB, bucket string) (*AuditStore, error) {
	if db == nil || bucket == "" {
		return nil, errors.New("audit store: NewAuditStore needs a bbolt DB and a bucket name")
	}
	return &AuditStore{db: db, bucket: []byte(bucket)}, nil
}

func (s *AuditStore) appendTo(ctx context.Context, chain string, sub, value []byte) error {
	if !audit.ValidChainID(chain) {
		return errors.New("audit store: invalid chain id")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(s.bucket)
		if err != nil {
			return err
		}
		cb, err := top.CreateBucketIfNotExists([]byte(chain))
		if err != nil {
			return err
		}
		b, err := cb.CreateBucketIfNotExists(sub)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(binary.BigEndian.AppendUint64(nil, seq), value)
	})
}

// Append implements audit.Store.
func (s *AuditStore) Append(ctx context.Context, chain string, record []byte) error {
	if err := s.appendTo(ctx, chain, auditBktRecords, record); err != nil {
		return fmt.Errorf("audit store: append to chain %s: %w", chain, err)
	}
	return nil
}

// Checkpoint implements audit.Store.
func (s *AuditStore) Checkpoint(ctx context.Context, chain string, checkpoint []byte) error {
	if err := s.appendTo(ctx, chain, auditBktCheckpoints, checkpoint); err != nil {
		return fmt.Errorf("audit store: checkpoint chain %s: %w", chain, err)
	}
	return nil
}

// sub returns chain's sub bucket in tx, or nil.
func (s *AuditStore) sub(tx *bolt.Tx, chain string, name []byte) *bolt.Bucket {
	top := tx.Bucket(s.bucket)
	if top == nil {
		return nil
	}
	cb := top.Bucket([]byte(chain))
	if cb == nil {
		return nil
	}
	return cb.Bucket(name)
}

// Chains implements audit.Store.
func (s *AuditStore) Chains(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(s.bucket)
		if top == nil {
			return nil
		}
		return top.ForEachBucket(func(k []byte) error {
			if audit.ValidChainID(string(k)) {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit store: list chains: %w", err)
	}
	return ids, ctx.Err()
}

// Len implements audit.Store.
func (s *AuditStore) Len(ctx context.Context, chain string) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := s.sub(tx, chain, auditBktRecords); b != nil {
			n = int64(b.Stats().KeyN)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("audit store: length of chain %s: %w", chain, err)
	}
	return n, ctx.Err()
}

// Range implements audit.Store. Positions count stored entries (a deleted
// entry shifts the later ones, as in a Redis list).
func (s *AuditStore) Range(ctx context.Context, chain string, start int64, n int) ([][]byte, error) {
	if start < 0 || n < 0 {
		return nil, errors.New("audit store: negative range")
	}
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.sub(tx, chain, auditBktRecords)
		if b == nil || n == 0 {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if b.Sequence() == uint64(b.Stats().KeyN) {
			// Nothing was ever deleted: position p is key p+1.
			k, v = c.Seek(binary.BigEndian.AppendUint64(nil, uint64(start)+1))
		} else {
			k, v = c.First()
			for pos := int64(0); k != nil && pos < start; pos++ {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(out) < n; k, v = c.Next() {
			out = append(out, append([]byte(nil), v...))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit store: read chain %s at %d: %w", chain, start, err)
	}
	return out, ctx.Err()
}

// Checkpoints implements audit.Store.
func (s *AuditStore) Checkpoints(ctx context.Context, chain string) ([][]byte, error) {
	var out [][]byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := s.sub(tx, chain, auditBktCheckpoints)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			out = append(out, append([]byte(nil), v...))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("audit store: checkpoints of chain %s: %w", chain, err)
	}
	return out, ctx.Err()
}

// AuditBucket is the top-level bucket of the audit log in the state file.
const AuditBucket = "audit"

// Audit returns the audit log store kept in s's state file.
func (s *Store) Audit() *AuditStore {
	return &AuditStore{db: s.State.db, bucket: []byte(AuditBucket)}
}

// OpenAuditReadOnly opens the audit log in dir's state file read-only, for
// `broker audit` while no broker runs. A running embedded broker holds the
// file's lock: the error says so (read through its admin listener then).
func OpenAuditReadOnly(dir string) (*AuditStore, func(), error) {
	path := filepath.Join(dir, StateFileName)
	if _, err := os.Stat(path); err != nil {
		return nil, nil, fmt.Errorf("no embedded store at %s (--data-dir / SEALRELAY_DATA_DIR): %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, nil, fmt.Errorf("%s is %w", path, ErrInUse)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &AuditStore{db: db, bucket: []byte(AuditBucket)}, func() { _ = db.Close() }, nil
}

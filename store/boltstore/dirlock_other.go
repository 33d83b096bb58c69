//go:build !unix

package boltstore

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDataDir opens dir/LockFileName. Without flock the store relies on
// bbolt's own file locks, which still refuse a second process.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded store lock %s: %w", path, err)
	}
	return f, nil
}

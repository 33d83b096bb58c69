//go:build !unix

package bridge

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens dir/lock; other platforms get no advisory lock.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	return f, nil
}

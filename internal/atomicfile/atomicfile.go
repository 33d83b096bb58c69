// Package atomicfile replaces files atomically and durably: readers see the
// old content or the new, never a mix, and after Write returns the new
// content survives a crash.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrCreateTemp is wrapped in Write's error when no temporary file can be
// created next to the target (e.g. a read-only directory such as a mounted
// secret).
var ErrCreateTemp = errors.New("cannot create a temporary file next to it")

// Write replaces path with data. The one durability policy: write a
// temporary file in the same directory, fsync it, rename it over path, then
// fsync the directory. The new file keeps the permission bits of the file it
// replaces, limited to perm (so it never becomes more open than perm), or
// gets perm when path is new. On error the temporary file is removed and
// path is unchanged (unless only the final directory fsync failed).
func Write(path string, data []byte, perm fs.FileMode) error {
	mode := perm.Perm()
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm() & perm.Perm()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("replace %s: %w: %w", path, ErrCreateTemp, err)
	}
	tmp := f.Name()
	fail := func(step string, err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: %s: %w", path, step, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail("chmod", err)
	}
	if _, err := f.Write(data); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: rename: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that entries created or renamed in it
// survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

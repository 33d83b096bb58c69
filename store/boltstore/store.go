package boltstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sealrelay/sealrelay/queue"
)

// Store is the embedded engine of one broker process, in one data
// directory: its State (embedded, a state.Store, in StateFileName) and the
// agents' inboxes (Inbox, a queue.Store, in InboxFileName).
type Store struct {
	*State
	// Inbox holds the agents' inboxes.
	Inbox *Inbox

	dir  string
	lock *os.File
}

// LockFileName is the data directory's lock file: the one lock of the
// embedded store, held by the process that opened it (Open, OpenStateDir)
// until Close.
const LockFileName = "LOCK"

// ErrInUse means another process has the embedded store open (its data
// directory lock or one of its files): the store allows one process.
var ErrInUse = errors.New("in use by another process (a running `broker serve`?): the embedded store allows one process")

// Dir returns the data directory.
func (s *Store) Dir() string { return s.dir }

// Open opens (creating them, mode 0700/0600, if needed) the data
// directory dir and both files, under the directory's one lock
// (LockFileName): while another process has the store open, Open fails at
// once with ErrInUse naming the directory.
func Open(dir string, opts queue.Options, inboxOpts ...InboxOption) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	st, err := OpenState(filepath.Join(dir, StateFileName))
	if err != nil {
		_ = lock.Close()
		return nil, lockError(filepath.Join(dir, StateFileName), err)
	}
	q, err := OpenInbox(dir, opts, inboxOpts...)
	if err != nil {
		_ = st.Close()
		_ = lock.Close()
		return nil, lockError(filepath.Join(dir, InboxFileName), fmt.Errorf("open embedded inboxes in %s: %w", dir, err))
	}
	return &Store{State: st, Inbox: q, dir: dir, lock: lock}, nil
}

// OpenStateDir opens the State Open would use, without the inboxes (for
// `broker keys rotate`).
func OpenStateDir(dir string, opts ...StateOption) (*State, error) {
	path := filepath.Join(dir, StateFileName)
	st, err := OpenState(path, opts...)
	if err != nil {
		return nil, lockError(path, err)
	}
	return st, nil
}

// lockError explains err when it is bbolt's lock timeout: another process
// has the file open.
func lockError(path string, err error) error {
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%s is %w; stop it first, or use --redis-url", path, ErrInUse)
	}
	return err
}

// Close closes the inboxes (waking every waiting Pull) and the state, and
// releases the data directory's lock.
func (s *Store) Close() error {
	err := errors.Join(s.Inbox.Close(), s.State.Close())
	if s.lock != nil {
		err = errors.Join(err, s.lock.Close())
	}
	return err
}

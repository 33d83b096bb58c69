package redisstore

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Store is the Redis engine of one broker process: its State (embedded, a
// state.Store) and the agents' inboxes (Inbox, a queue.Store), both under
// one prefix laid out by keys.go.
type Store struct {
	*State
	// Inbox holds the agents' inboxes.
	Inbox *Inbox
}

// Open opens the engine on rdb under prefix (for example "sealrelay:"):
// the state under <prefix>st:, the inboxes under <prefix>q: (opts.Prefix
// is ignored). The caller owns rdb; Close does not close it.
func Open(rdb redis.UniversalClient, prefix string, opts InboxOptions) (*Store, error) {
	opts.Prefix = prefix + inboxNamespace
	q, err := NewInbox(rdb, opts)
	if err != nil {
		return nil, fmt.Errorf("open redis inboxes: %w", err)
	}
	return &Store{State: OpenState(rdb, prefix), Inbox: q}, nil
}

// OpenState returns the State Open would use, without the inboxes (for
// `broker keys rotate`).
func OpenState(rdb redis.UniversalClient, prefix string) *State {
	return NewState(rdb, prefix+stateNamespace)
}

// Close closes the inboxes (waking every waiting Pull) and the state.
func (s *Store) Close() error {
	return errors.Join(s.Inbox.Close(), s.State.Close())
}

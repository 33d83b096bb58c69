package broker

import (
	"context"
	"sync"
)

// keyedLock is a set of mutexes by key (an org id) whose waits end with
// their context. Entries exist only while someone holds or waits for them.
// The zero value is ready to use.
type keyedLock struct {
	mu sync.Mutex
	m  map[string]*keyedLockEntry
}

type keyedLockEntry struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters
}

// lock takes the mutex of key, or returns ctx's error when ctx ends first.
// The caller calls the returned unlock exactly once.
func (k *keyedLock) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLockEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedLockEntry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; k.release(key, e) }, nil
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
}

func (k *keyedLock) release(key string, e *keyedLockEntry) {
	k.mu.Lock()
	if e.refs--; e.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}

// Package boundedcache is the one in-process cache policy of sealrelay: a
// map with a size cap and an optional time to live, that evicts its oldest
// entry (by insertion) when full, is safe for concurrent use, and hands every
// entry it drops to an optional hook so that secret values can be wiped.
//
// It replaces hand-rolled maps that were reset or emptied at random when
// full: an entry is dropped only when it expires, when it is the oldest of a
// full cache, when it is replaced, deleted or cleared.
package boundedcache

import (
	"container/list"
	"sync"
	"time"
)

// DefaultMax is the size cap of a cache whose Options.Max is not positive.
const DefaultMax = 10000

// Options configure a Cache.
type Options[K comparable, V any] struct {
	// Max is the most entries kept (DefaultMax when ≤ 0). Adding to a full
	// cache evicts the oldest entry.
	Max int
	// TTL is how long an entry is served after it was added (0 = until
	// evicted).
	TTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OnEvict, when set, is called with every entry the cache drops
	// (expired, evicted, replaced, deleted or cleared), after the cache's
	// lock is released, e.g. to wipe a secret. It must not be set for values
	// a caller may still be using after they were dropped.
	OnEvict func(key K, value V)
}

type entry[K comparable, V any] struct {
	key   K
	value V
	added time.Time
}

// Cache is a bounded map from K to V. The zero value is not usable; create
// one with New.
type Cache[K comparable, V any] struct {
	opts Options[K, V]

	mu    sync.Mutex
	m     map[K]*list.Element
	order *list.List // of *entry, oldest first
}

// New returns an empty cache configured by opts.
func New[K comparable, V any](opts Options[K, V]) *Cache[K, V] {
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cache[K, V]{opts: opts, m: make(map[K]*list.Element), order: list.New()}
}

// expired reports whether e is past its time to live at now.
func (c *Cache[K, V]) expired(e *entry[K, V], now time.Time) bool {
	return c.opts.TTL > 0 && now.Sub(e.added) >= c.opts.TTL
}

// removeLocked unlinks el and returns its entry for the hook.
func (c *Cache[K, V]) removeLocked(el *list.Element) *entry[K, V] {
	e := c.order.Remove(el).(*entry[K, V])
	delete(c.m, e.key)
	return e
}

// evicted calls the hook for dropped entries; the lock must not be held.
func (c *Cache[K, V]) evicted(dropped []*entry[K, V]) {
	if c.opts.OnEvict == nil {
		return
	}
	for _, e := range dropped {
		c.opts.OnEvict(e.key, e.value)
	}
}

// Get returns the value stored for key, unless it has expired (an expired
// entry is dropped).
func (c *Cache[K, V]) Get(key K) (V, bool) {
	var zero V
	c.mu.Lock()
	el, ok := c.m[key]
	if !ok {
		c.mu.Unlock()
		return zero, false
	}
	e := el.Value.(*entry[K, V])
	if c.expired(e, c.opts.Now()) {
		c.removeLocked(el)
		c.mu.Unlock()
		c.evicted([]*entry[K, V]{e})
		return zero, false
	}
	c.mu.Unlock()
	return e.value, true
}

// Put stores value for key, replacing (and dropping) any value stored
// before; a full cache first evicts its oldest entry.
func (c *Cache[K, V]) Put(key K, value V) {
	c.mu.Lock()
	var dropped []*entry[K, V]
	if el, ok := c.m[key]; ok {
		dropped = append(dropped, c.removeLocked(el))
	}
	dropped = append(dropped, c.insertLocked(key, value)...)
	c.mu.Unlock()
	c.evicted(dropped)
}

// Add stores value for key unless a live value is stored already. It
// returns the value the cache holds for key afterwards and whether it is the
// one given. Callers that compute a value outside the lock use it so that
// concurrent callers end up sharing one value.
func (c *Cache[K, V]) Add(key K, value V) (V, bool) {
	c.mu.Lock()
	var dropped []*entry[K, V]
	if el, ok := c.m[key]; ok {
		e := el.Value.(*entry[K, V])
		if !c.expired(e, c.opts.Now()) {
			c.mu.Unlock()
			return e.value, false
		}
		dropped = append(dropped, c.removeLocked(el))
	}
	dropped = append(dropped, c.insertLocked(key, value)...)
	c.mu.Unlock()
	c.evicted(dropped)
	return value, true
}

// insertLocked adds a new entry for key (absent from the cache), evicting
// the oldest entries while the cache is full, and returns what it evicted.
func (c *Cache[K, V]) insertLocked(key K, value V) []*entry[K, V] {
	var dropped []*entry[K, V]
	for c.order.Len() >= c.opts.Max {
		dropped = append(dropped, c.removeLocked(c.order.Front()))
	}
	c.m[key] = c.order.PushBack(&entry[K, V]{key: key, value: value, added: c.opts.Now()})
	return dropped
}

// Delete drops the entry for key, if any.
func (c *Cache[K, V]) Delete(key K) {
	c.mu.Lock()
	el, ok := c.m[key]
	if !ok {
		c.mu.Unlock()
		return
	}
	e := c.removeLocked(el)
	c.mu.Unlock()
	c.evicted([]*entry[K, V]{e})
}

// Clear drops every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	var dropped []*entry[K, V]
	for c.order.Len() > 0 {
		dropped = append(dropped, c.removeLocked(c.order.Front()))
	}
	c.mu.Unlock()
	c.evicted(dropped)
}

// Len returns how many entries are stored, expired ones included until
// they are looked up or evicted.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

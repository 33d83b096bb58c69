package boundedcache_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/boundedcache"
)

// clock is a manual clock for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// op is one step of a table case: put/add/get/delete/clear/advance.
type op struct {
	do    string
	key   string
	value int
	d     time.Duration
	// want is what get returns (ok=false when wantMiss) and what add
	// returns as the held value.
	want     int
	wantMiss bool
	wantNew  bool // add: the given value was stored
}

// TestCache drives a cache of cap 2 and TTL 1m through each way an entry
// is dropped and checks the values read and the hook's calls.
func TestCache(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		ops     []op
		evicted []string // "key=value" in hook order
		len     int
	}{
		{"get after put", []op{{do: "put", key: "a", value: 1}, {do: "get", key: "a", want: 1}}, nil, 1},
		{"miss", []op{{do: "get", key: "a", wantMiss: true}}, nil, 0},
		{"full cache evicts the oldest", []op{
			{do: "put", key: "a", value: 1}, {do: "put", key: "b", value: 2}, {do: "get", key: "a", want: 1},
			{do: "put", key: "c", value: 3},
			{do: "get", key: "a", wantMiss: true}, {do: "get", key: "b", want: 2}, {do: "get", key: "c", want: 3},
		}, []string{"a=1"}, 2},
		{"put replaces and drops the old value", []op{
			{do: "put", key: "a", value: 1}, {do: "put", key: "a", value: 9}, {do: "get", key: "a", want: 9},
		}, []string{"a=1"}, 1},
		{"replacing renews the age", []op{
			{do: "put", key: "a", value: 1}, {do: "put", key: "b", value: 2}, {do: "put", key: "a", value: 3},
			{do: "put", key: "c", value: 4}, {do: "get", key: "a", want: 3}, {do: "get", key: "b", wantMiss: true},
		}, []string{"a=1", "b=2"}, 2},
		{"expires after the ttl", []op{
			{do: "put", key: "a", value: 1}, {do: "advance", d: time.Minute - time.Nanosecond}, {do: "get", key: "a", want: 1},
			{do: "advance", d: time.Nanosecond}, {do: "get", key: "a", wantMiss: true},
		}, []string{"a=1"}, 0},
		{"add keeps a live value", []op{
			{do: "add", key: "a", value: 1, want: 1, wantNew: true}, {do: "add", key: "a", value: 2, want: 1},
		}, nil, 1},
		{"add replaces an expired value", []op{
			{do: "add", key: "a", value: 1, want: 1, wantNew: true}, {do: "advance", d: time.Minute},
			{do: "add", key: "a", value: 2, want: 2, wantNew: true}, {do: "get", key: "a", want: 2},
		}, []string{"a=1"}, 1},
		{"add to a full cache evicts the oldest", []op{
			{do: "add", key: "a", value: 1, want: 1, wantNew: true}, {do: "add", key: "b", value: 2, want: 2, wantNew: true},
			{do: "add", key: "c", value: 3, want: 3, wantNew: true},
		}, []string{"a=1"}, 2},
		{"delete", []op{
			{do: "put", key: "a", value: 1}, {do: "delete", key: "a"}, {do: "delete", key: "a"}, {do: "get", key: "a", wantMiss: true},
		}, []string{"a=1"}, 0},
		{"clear drops everything in age order", []op{
			{do: "put", key: "a", value: 1}, {do: "put", key: "b", value: 2}, {do: "clear"},
			{do: "get", key: "a", wantMiss: true}, {do: "get", key: "b", wantMiss: true},
		}, []string{"a=1", "b=2"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &clock{t: time.Unix(1700000000, 0)}
			var mu sync.Mutex
			var evicted []string
			c := boundedcache.New(boundedcache.Options[string, int]{
				Max: 2, TTL: time.Minute, Now: clk.now,
				OnEvict: func(k string, v int) {
					mu.Lock()
					evicted = append(evicted, fmt.Sprintf("%s=%d", k, v))
					mu.Unlock()
				},
			})
			for i, o := range tc.ops {
				switch o.do {
				case "put":
					c.Put(o.key, o.value)
				case "add":
					got, isNew := c.Add(o.key, o.value)
					if got != o.want || isNew != o.wantNew {
						t.Fatalf("op %d: Add(%s, %d) = %d, %v; want %d, %v", i, o.key, o.value, got, isNew, o.want, o.wantNew)
					}
				case "get":
					got, ok := c.Get(o.key)
					if ok == o.wantMiss || (ok && got != o.want) {
						t.Fatalf("op %d: Get(%s) = %d, %v; want %d, miss %v", i, o.key, got, ok, o.want, o.wantMiss)
					}
				case "delete":
					c.Delete(o.key)
				case "clear":
					c.Clear()
				case "advance":
					clk.advance(o.d)
				default:
					t.Fatalf("unknown op %q", o.do)
				}
			}
			if !slices.Equal(evicted, tc.evicted) {
				t.Errorf("evicted %v, want %v", evicted, tc.evicted)
			}
			if c.Len() != tc.len {
				t.Errorf("Len = %d, want %d", c.Len(), tc.len)
			}
		})
	}
}

// TestCacheDefaults: without Max the cap is DefaultMax and without TTL
// entries never expire.
func TestCacheDefaults(t *testing.T) {
	t.Parallel()
	c := boundedcache.New(boundedcache.Options[int, int]{})
	for i := range boundedcache.DefaultMax + 5 {
		c.Put(i, i)
	}
	if c.Len() != boundedcache.DefaultMax {
		t.Fatalf("Len = %d, want %d", c.Len(), boundedcache.DefaultMax)
	}
	if _, ok := c.Get(4); ok {
		t.Error("the oldest entries were not the ones evicted")
	}
	if v, ok := c.Get(5); !ok || v != 5 {
		t.Errorf("Get(5) = %d, %v", v, ok)
	}
}

// TestCacheConcurrent: concurrent Add of one key ends with every caller
// holding the same value, and the cap holds under concurrent Puts (run
// with -race).
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := boundedcache.New(boundedcache.Options[int, *int]{Max: 50})
	const n = 16
	got := make([]*int, n)
	var adds, wg sync.WaitGroup
	adds.Add(n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := new(int)
			got[i], _ = c.Add(-1, v)
			adds.Done()
			adds.Wait() // the Puts below may evict the shared key
			for k := range 200 {
				c.Put(i*1000+k, v)
				c.Get(i*1000 + k/2)
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("caller %d holds another value for the shared key", i)
		}
	}
	if c.Len() > 50 {
		t.Errorf("Len = %d over the cap 50", c.Len())
	}
}

package boltstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestGroupCommitIsolatesFailures queues calls behind a commit in flight,
// so that they share the next commit, and checks that one failing or
// panicking call neither fails nor loses the writes of the others.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "gc.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	g := &groupCommit{db: db}
	bkt := []byte("b")
	put := func(k string) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(bkt)
			if err != nil {
				return err
			}
			return b.Put([]byte(k), []byte(k))
		}
	}
	release, entered := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- g.update(func(tx *bolt.Tx) error {
			close(entered)
			<-release
			return put("first")(tx)
		})
	}()
	<-entered
	boom := errors.New("boom")
	calls := []struct {
		key string
		fn  func(*bolt.Tx) error
		err bool
	}{
		{"a", put("a"), false},
		{"fail", func(*bolt.Tx) error { return boom }, true},
		{"b", put("b"), false},
		{"panic", func(*bolt.Tx) error { panic("bad") }, true},
		{"c", put("c"), false},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = g.update(c.fn) }()
	}
	for { // wait until every call is queued behind the commit in flight
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == len(calls) {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("first call: %v", err)
	}
	for i, c := range calls {
		if (errs[i] != nil) != c.err {
			t.Errorf("call %s: err = %v, want error %v", c.key, errs[i], c.err)
		}
	}
	if !errors.Is(errs[1], boom) {
		t.Errorf("failing call: err = %v, want %v", errs[1], boom)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for _, k := range []string{"first", "a", "b", "c"} {
			if v := tx.Bucket(bkt).Get([]byte(k)); string(v) != k {
				return fmt.Errorf("key %s = %q, want it stored", k, v)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if got := g.commits.Load(); got < 2 {
		t.Errorf("commits = %d, want at least 2", got)
	}
}

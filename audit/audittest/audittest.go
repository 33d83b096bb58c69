// Package audittest is the conformance suite every audit.Store engine
// runs: `audittest.Run(t, func(t *testing.T) audit.Store { ... })`, with a
// fresh, empty store per call.
package audittest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
)

// Run runs the conformance suite against stores made by newStore. Each
// subtest asks for its own store; they run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) audit.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st audit.Store)
	}{
		{"Empty", testEmpty},
		{"AppendOrderAndBytes", testAppendOrder},
		{"RangeBounds", testRangeBounds},
		{"Checkpoints", testCheckpoints},
		{"ChainsIndependent", testChainsIndependent},
		{"ConcurrentChains", testConcurrentChains},
		{"LogVerifyAndTail", testLogVerify},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testEmpty(t *testing.T, st audit.Store) {
	c := ctx(t)
	ids, err := st.Chains(c)
	if err != nil || len(ids) != 0 {
		t.Fatalf("Chains on an empty store = %v, %v; want none", ids, err)
	}
	if n, err := st.Len(c, "nochain"); err != nil || n != 0 {
		t.Fatalf("Len of an unknown chain = %d, %v; want 0", n, err)
	}
	if rs, err := st.Range(c, "nochain", 0, 10); err != nil || len(rs) != 0 {
		t.Fatalf("Range of an unknown chain = %d records, %v; want none", len(rs), err)
	}
	if cs, err := st.Checkpoints(c, "nochain"); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints of an unknown chain = %d, %v; want none", len(cs), err)
	}
}

// entry returns distinct binary data for record i, with zero and high bytes.
func entry(i int) []byte {
	return append([]byte{0, 0xff, byte(i), 0}, fmt.Sprintf("record-%d\n\r", i)...)
}

func testAppendOrder(t *testing.T, st audit.Store) {
	c := ctx(t)
	const n = 25
	for i := range n {
		if err := st.Append(c, "c1", entry(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if l, err := st.Len(c, "c1"); err != nil || l != n {
		t.Fatalf("Len = %d, %v; want %d", l, err, n)
	}
	got, err := st.Range(c, "c1", 0, n+10)
	if err != nil || len(got) != n {
		t.Fatalf("Range(0, %d) = %d records, %v; want %d", n+10, len(got), err, n)
	}
	for i, g := range got {
		if !bytes.Equal(g, entry(i)) {
			t.Fatalf("record %d = %q, want %q (stored bytes must come back exactly, in append order)", i, g, entry(i))
		}
	}
	ids, err := st.Chains(c)
	if err != nil || !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("Chains = %v, %v; want [c1]", ids, err)
	}
}

func testRangeBounds(t *testing.T, st audit.Store) {
	c := ctx(t)
	for i := range 10 {
		if err := st.Append(c, "r", entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		start    int64
		n        int
		from, to int // expected entries [from, to)
	}{
		{0, 3, 0, 3}, {3, 4, 3, 7}, {8, 5, 8, 10}, {9, 1, 9, 10}, {10, 5, 0, 0}, {42, 1, 0, 0}, {2, 0, 0, 0},
	} {
		got, err := st.Range(c, "r", tc.start, tc.n)
		if err != nil {
			t.Fatalf("Range(%d, %d): %v", tc.start, tc.n, err)
		}
		if len(got) != tc.to-tc.from {
			t.Fatalf("Range(%d, %d) = %d records, want %d", tc.start, tc.n, len(got), tc.to-tc.from)
		}
		for i, g := range got {
			if !bytes.Equal(g, entry(tc.from+i)) {
				t.Fatalf("Range(%d, %d)[%d] = %q, want %q", tc.start, tc.n, i, g, entry(tc.from+i))
			}
		}
	}
}

func testCheckpoints(t *testing.T, st audit.Store) {
	c := ctx(t)
	if err := st.Append(c, "k", entry(0)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := st.Checkpoint(c, "k", entry(100+i)); err != nil {
			t.Fatalf("Checkpoint %d: %v", i, err)
		}
	}
	got, err := st.Checkpoints(c, "k")
	if err != nil || len(got) != 3 {
		t.Fatalf("Checkpoints = %d, %v; want 3", len(got), err)
	}
	for i, g := range got {
		if !bytes.Equal(g, entry(100+i)) {
			t.Fatalf("checkpoint %d = %q, want %q", i, g, entry(100+i))
		}
	}
	if l, err := st.Len(c, "k"); err != nil || l != 1 {
		t.Fatalf("Len after checkpoints = %d, %v; want 1 (checkpoints are not records)", l, err)
	}
}

func testChainsIndependent(t *testing.T, st audit.Store) {
	c := ctx(t)
	for i := range 4 {
		for _, id := range []string{"a", "b-2"} {
			if err := st.Append(c, id, append([]byte(id+":"), entry(i)...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.Checkpoint(c, "a", []byte("cp-a")); err != nil {
		t.Fatal(err)
	}
	ids, err := st.Chains(c)
	sort.Strings(ids)
	if err != nil || !slices.Equal(ids, []string{"a", "b-2"}) {
		t.Fatalf("Chains = %v, %v; want [a b-2]", ids, err)
	}
	for _, id := range ids {
		got, err := st.Range(c, id, 0, 10)
		if err != nil || len(got) != 4 {
			t.Fatalf("Range(%s) = %d, %v; want 4", id, len(got), err)
		}
		for i, g := range got {
			if want := append([]byte(id+":"), entry(i)...); !bytes.Equal(g, want) {
				t.Fatalf("chain %s record %d = %q, want %q", id, i, g, want)
			}
		}
	}
	if cs, err := st.Checkpoints(c, "b-2"); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints(b-2) = %d, %v; want none (a's checkpoint leaked)", len(cs), err)
	}
}

func testConcurrentChains(t *testing.T, st audit.Store) {
	c := ctx(t)
	const chains, per = 4, 30
	var wg sync.WaitGroup
	errs := make(chan error, chains)
	for w := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%d", w)
			for i := range per {
				if err := st.Append(c, id, entry(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Append: %v", err)
	}
	for w := range chains {
		id := fmt.Sprintf("w%d", w)
		got, err := st.Range(c, id, 0, per)
		if err != nil || len(got) != per {
			t.Fatalf("Range(%s) = %d, %v; want %d", id, len(got), err, per)
		}
		for i, g := range got {
			if !bytes.Equal(g, entry(i)) {
				t.Fatalf("chain %s record %d out of order: %q", id, i, g)
			}
		}
	}
}

// testLogVerify writes through audit.Log (two writers, like two replicas)
// and checks that Verify accepts the result and Tail returns the newest.
func testLogVerify(t *testing.T, st audit.Store) {
	c := ctx(t)
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*audit.Log
	for range 2 {
		l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: 7, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	const per = 20
	for i := range per {
		for j, l := range logs {
			if _, err := l.Record(c, audit.Event{Kind: audit.KindCall, Org: "T1", Agent: fmt.Sprintf("ag-%d", j), Method: "chat.postMessage", BytesIn: int64(i)}); err != nil {
				t.Fatalf("Record: %v", err)
			}
		}
	}
	for _, l := range logs {
		if err := l.Close(c); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	rep, err := audit.Verify(c, st, keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() || len(rep.Chains) != 2 || rep.Records() != 2*per {
		t.Fatalf("Verify = %+v; want 2 intact chains of %d records", rep, per)
	}
	for _, cr := range rep.Chains {
		if cr.LastCheckpoint == nil || cr.LastCheckpoint.Seq != per {
			t.Fatalf("chain %s: last checkpoint %+v, want seq %d (written on Close)", cr.Chain, cr.LastCheckpoint, per)
		}
	}
	tail, err := audit.Tail(c, st, 5)
	if err != nil || len(tail) != 5 {
		t.Fatalf("Tail(5) = %d, %v", len(tail), err)
	}
	if last := tail[len(tail)-1]; last.Seq != per || last.BytesIn != per-1 {
		t.Fatalf("newest record = seq %d bytes_in %d, want seq %d bytes_in %d", last.Seq, last.BytesIn, per, per-1)
	}
}

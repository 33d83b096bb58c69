package queue

import (
	"testing"
	"time"
)

func boltHarness() harness {
	return harness{
		open: func(t *testing.T, opts Options, n int) []Store {
			s, err := OpenBoltStore(t.TempDir(), opts, WithSweepInterval(100*time.Millisecond))
			if err != nil {
				t.Fatalf("OpenBoltStore: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			out := make([]Store, n)
			for i := range out {
				out[i] = s // one process holds the file; instances share it
			}
			return out
		},
		residue: func(t *testing.T, st Store) int {
			n, err := st.(*BoltStore).inboxCount()
			if err != nil {
				t.Fatalf("inboxCount: %v", err)
			}
			return n
		},
	}
}

func TestBoltConformance(t *testing.T) {
	runConformance(t, boltHarness())
}

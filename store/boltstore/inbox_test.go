package boltstore

import (
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

func boltHarness() queuetest.Harness {
	return queuetest.Harness{
		Open: func(t *testing.T, opts queue.Options, n int) []queue.Store {
			s, err := OpenInbox(t.TempDir(), opts, WithSweepInterval(100*time.Millisecond))
			if err != nil {
				t.Fatalf("OpenInbox: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			out := make([]queue.Store, n)
			for i := range out {
				out[i] = s // one process holds the file; instances share it
			}
			return out
		},
		Waiting: func(s queue.Store, inbox string) int { return s.(*Inbox).waiting(inbox) },
		Residue: func(t *testing.T, st queue.Store) int {
			n, err := st.(*Inbox).inboxCount()
			if err != nil {
				t.Fatalf("inboxCount: %v", err)
			}
			return n
		},
	}
}

func TestBoltConformance(t *testing.T) {
	queuetest.Run(t, boltHarness())
}

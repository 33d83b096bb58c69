package boltstore

// Inbox benchmarks at depth: the same work against an empty store and one
// holding deepMessages queued 2 KB messages across deepInboxes inboxes, which
// is where the embedded store used to collapse (issue 13). Run them with
//
//	go test -run x -bench Deep -benchtime 20000x ./store/boltstore/
//
// Besides msgs/s they report pages/msg: bbolt pages allocated (written) per
// message, from db.Stats, the store's write amplification.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/queue"
)

const (
	deepMessages = 100_000
	deepInboxes  = 20
	deepBody     = 2048
	deepPullers  = deepInboxes
	deepBatch    = 100 // what a bridge pulls when a backlog exists
)

// deepDepths are the store depths every deep benchmark runs at.
var deepDepths = []int{0, deepMessages}

// deepStore opens a store and fills it with depth keyed 2 KB messages
// spread over deepInboxes inboxes named deep-0 … (untimed; in large
// transactions, so that filling is quick).
func deepStore(b *testing.B, depth int) *Inbox {
	b.Helper()
	s, err := OpenInbox(b.TempDir(), queue.Options{Capacity: 1 << 30, DedupCapacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	body := deepPayload()
	const perTx = 2000
	for done := 0; done < depth; done += perTx {
		if err := s.db.Update(func(tx *bolt.Tx) error {
			for i := done; i < min(done+perTx, depth); i++ {
				inbox := "deep-" + strconv.Itoa(i%deepInboxes)
				if _, _, err := s.putTx(tx, inbox, "fill"+strconv.Itoa(i), true, body); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func deepPayload() []byte {
	body := make([]byte, deepBody)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	return body
}

// pagesWritten returns the pages bbolt has allocated for writes so far.
func pagesWritten(s *Inbox) int64 {
	st := s.db.Stats()
	return st.TxStats.GetPageCount()
}

// processCPU returns this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBoltEnqueueDeep stores b.N keyed messages (EnqueueID, the
// broker's path for Events API copies) from 32 producers into the
// deepInboxes inboxes, on an empty store and on one already holding
// deepMessages.
func BenchmarkBoltEnqueueDeep(b *testing.B) {
	for _, depth := range deepDepths {
		b.Run(fmt.Sprintf("queued=%d", depth), func(b *testing.B) {
			s := deepStore(b, depth)
			body := deepPayload()
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, benchProducers)
			b.SetBytes(deepBody)
			pages, cpu := pagesWritten(s), processCPU()
			b.ResetTimer()
			start := time.Now()
			for p := range benchProducers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						inbox := "deep-" + strconv.Itoa(int(n)%deepInboxes)
						if _, err := s.EnqueueID(ctx, inbox, "ev"+strconv.FormatInt(n, 10)+"-"+strconv.Itoa(p), body); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(float64(pagesWritten(s)-pages)/float64(b.N), "pages/msg")
		})
	}
}

// BenchmarkBoltPullAckDeep pulls (batches of deepBatch, what a bridge
// pulls from a backlog) and acks b.N messages, one goroutine per deep
// inbox, from a store filled with depth+b.N messages: at the end depth are
// still queued, so every pull and ack works on a store at least that deep.
func BenchmarkBoltPullAckDeep(b *testing.B) {
	for _, depth := range deepDepths {
		b.Run(fmt.Sprintf("queued=%d", depth), func(b *testing.B) {
			s := deepStore(b, depth+b.N)
			ctx := context.Background()
			var got atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, deepPullers)
			b.SetBytes(deepBody)
			pages, cpu := pagesWritten(s), processCPU()
			b.ResetTimer()
			start := time.Now()
			for w := range deepPullers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					inbox := "deep-" + strconv.Itoa(w)
					receipts := make([]string, 0, deepBatch)
					for got.Load() < int64(b.N) {
						msgs, err := s.Pull(ctx, inbox, deepBatch, 0)
						if err != nil {
							errs <- err
							return
						}
						if len(msgs) == 0 {
							return
						}
						receipts = receipts[:0]
						for _, m := range msgs {
							receipts = append(receipts, m.Receipt)
						}
						n, err := s.Ack(ctx, inbox, receipts)
						if err != nil {
							errs <- err
							return
						}
						if n != len(receipts) {
							errs <- fmt.Errorf("acked %d of %d", n, len(receipts))
							return
						}
						got.Add(int64(n))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			if got.Load() < int64(b.N) {
				b.Fatalf("acked %d of %d", got.Load(), b.N)
			}
			b.ReportMetric(float64(got.Load())/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(got.Load()), "cpu-µs/msg")
			b.ReportMetric(float64(pagesWritten(s)-pages)/float64(got.Load()), "pages/msg")
		})
	}
}

package boltstore

// Inbox benchmarks (see queue/queuetest/bench.go):
//
//	go test -run x -bench . -benchtime 2s ./store/boltstore/

import (
	"fmt"
	"testing"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

const benchProducers = 32

func benchBoltStore(b *testing.B) *Inbox {
	s, err := OpenInbox(b.TempDir(), queue.Options{Capacity: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// withCommits runs body on a fresh store and reports the bbolt commits and
// page writes per operation it caused.
func withCommits(b *testing.B, body func(s *Inbox)) {
	s := benchBoltStore(b)
	c0, p0 := s.commits(), s.pagesWritten()
	body(s)
	c, p := s.commits()-c0, s.pagesWritten()-p0
	b.ReportMetric(float64(c)/float64(b.N), "commits/op")
	b.ReportMetric(float64(p)/float64(b.N), "writes/op")
	if c > 0 {
		b.ReportMetric(float64(p)/float64(c), "writes/commit")
	}
}

func BenchmarkBoltEnqueue(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			withCommits(b, func(s *Inbox) { queuetest.BenchEnqueue(b, s, n, false, nil) })
		})
	}
}

// BenchmarkBoltEnqueueID is BenchmarkBoltEnqueue through EnqueueID.
func BenchmarkBoltEnqueueID(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			withCommits(b, func(s *Inbox) { queuetest.BenchEnqueue(b, s, n, true, nil) })
		})
	}
}

func BenchmarkBoltPullAck(b *testing.B) {
	withCommits(b, func(s *Inbox) { queuetest.BenchPullAck(b, s, nil) })
}

func BenchmarkBoltWakeUp(b *testing.B) {
	s := benchBoltStore(b)
	queuetest.BenchWakeUp(b, s, s, s.waiting)
}

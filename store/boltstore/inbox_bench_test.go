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

func BenchmarkBoltEnqueue(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			queuetest.BenchEnqueue(b, benchBoltStore(b), n, false, nil)
		})
	}
}

// BenchmarkBoltEnqueueID is BenchmarkBoltEnqueue through EnqueueID.
func BenchmarkBoltEnqueueID(b *testing.B) {
	for _, n := range []int{1, benchProducers} {
		b.Run(fmt.Sprintf("inboxes=%d", n), func(b *testing.B) {
			queuetest.BenchEnqueue(b, benchBoltStore(b), n, true, nil)
		})
	}
}

func BenchmarkBoltPullAck(b *testing.B) {
	queuetest.BenchPullAck(b, benchBoltStore(b), nil)
}

func BenchmarkBoltWakeUp(b *testing.B) {
	s := benchBoltStore(b)
	queuetest.BenchWakeUp(b, s, s, s.waiting)
}

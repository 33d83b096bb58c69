package audit_test

import (
	"context"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
)

// BenchmarkRecord is the CPU cost of one record (encode, MAC, in-memory
// append, a checkpoint signature every 100 records).
func BenchmarkRecord(b *testing.B) {
	l, err := audit.NewLog(audit.NewMemStore(), newKeys(b), audit.Options{CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ev := audit.Event{Kind: audit.KindCall, Phase: audit.PhaseIntent, Org: "T0123456", Agent: "ag-0123456789abcdef01234567", Method: "chat.postMessage", Channel: "C0123456", BytesIn: 300}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Record(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is the cost per record of verifying a chain.
func BenchmarkVerify(b *testing.B) {
	keys := newKeys(b)
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const n = 10000
	for range n {
		if _, err := l.Record(ctx, audit.Event{Kind: audit.KindSend, Org: "T1", Method: "chat.postMessage"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := audit.Verify(ctx, st, keys)
		if err != nil || !rep.OK() {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
}

package bridge

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// BenchmarkReceivePath measures the receive path per event: broker
// signature verification → sealed-box open → envelope parse → dedup check
// and persistent mark → delivery to an in-process consumer, in batches of 10
// (one pull at the default --max-messages) or 100 (a backlog pull). "fsync" syncs the dedup log once per batch (the
// default); "nosync" is the CPU-bound rate without that disk wait. Acks are
// network I/O and not included. cpu-µs/event is the process's user+system
// CPU per event (GC and the open workers included): the figure to compare.
// Run: go test -run x -bench ReceivePath -cpu 1 ./bridge/
func BenchmarkReceivePath(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchReceive(b, false, false, 10) })
	b.Run("fsync-100", func(b *testing.B) { benchReceive(b, false, false, 100) })
	b.Run("nosync", func(b *testing.B) { benchReceive(b, true, false, 10) })
	// "spool": the SSE stream as the only sink, each event sealed into the
	// encrypted spool, which is fsynced once per batch before the ack.
	b.Run("spool", func(b *testing.B) { benchReceive(b, false, true, 10) })
	b.Run("spool-100", func(b *testing.B) { benchReceive(b, false, true, 100) })
}

func benchReceive(b *testing.B, noSync, stream bool, batchSize int) {
	brokerSign, _ := crypto.GenerateSigningKey()
	brokerBox, _ := crypto.GenerateBoxKeyPair()
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSign, _ := crypto.GenerateSigningKey()
	var delivered int
	cfg := Config{
		Identity: Identity{BrokerURLs: []string{"http://127.0.0.1:1"}, OrgID: "T0123ABCD", BoxKey: agentBox, SigningKey: agentSign,
			BrokerBoxKey: brokerBox.Public, BrokerSigningKey: brokerSign.Public(), AccessToken: "x"},
		StateDir:    b.TempDir(),
		DedupNoSync: noSync,
	}
	if stream {
		cfg.Stream, cfg.StreamBuffer, cfg.StreamBufferBytes = true, b.N+1, 1<<40
	} else {
		cfg.Deliver = func(context.Context, *Event) error { delivered++; return nil }
	}
	br, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()

	// A realistic Events API message (~1 KiB), sealed before the timer for
	// each iteration (every Slack event has its own event_id, which the
	// bridge de-duplicates). The message id is not covered by the broker
	// signature, so it is set without re-sealing.
	sealed := make([]protocol.InboxMessage, b.N)
	ts := time.Now().Unix()
	for i := range sealed {
		payload, _ := json.Marshal(map[string]any{
			"type": "event_callback", "team_id": "T0123ABCD", "api_app_id": "A1", "event_id": "Ev" + strconv.Itoa(i), "event_time": 1771465000,
			"event": map[string]any{"type": "message", "channel": "C0123ABCD", "user": "U0123ABCD", "ts": "1771464999.000100",
				"text": strings.Repeat("hello world ", 50), "blocks": []any{}},
		})
		pt, _ := json.Marshal(protocol.Envelope{Source: "slack", Type: "event_callback", BrokerTimestamp: ts, Payload: payload})
		sealed[i], err = protocol.SealEnvelope(pt, "T0123ABCD", "x", ts, agentBox.Public, brokerSign)
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	batch := make([]protocol.InboxMessage, 0, batchSize)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := sealed[i]
		m.MessageID = "m-" + strconv.Itoa(i)
		batch = append(batch, m)
		if len(batch) == cap(batch) || i == b.N-1 {
			ids, _, err := br.process(ctx, batch)
			if err != nil || len(ids) != len(batch) {
				b.Fatalf("process: %v (%d of %d)", err, len(ids), len(batch))
			}
			batch = batch[:0]
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
	if stream {
		delivered = int(br.Health().Delivered)
	}
	if delivered != b.N {
		b.Fatalf("delivered %d of %d", delivered, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// processCPU is the process's user+system CPU time so far: the figure to
// compare on a shared machine, where wall time per event is noisy.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package bridge

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// BenchmarkReceivePath measures the receive path per event: broker
// signature verification → sealed-box open → envelope parse → dedup check
// and persistent mark → delivery to an in-process consumer, in batches of 10
// (one pull), as Run does. "fsync" syncs the dedup log once per batch (the
// default); "nosync" is the CPU-bound rate without that disk wait. Acks are
// network I/O and not included.
// Run: go test -run x -bench ReceivePath -cpu 1 ./bridge/
func BenchmarkReceivePath(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchReceive(b, false) })
	b.Run("nosync", func(b *testing.B) { benchReceive(b, true) })
}

func benchReceive(b *testing.B, noSync bool) {
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
		Deliver:     func(context.Context, *Event) error { delivered++; return nil },
	}
	br, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()

	// A realistic Events API message (~1 KiB), sealed once per pool slot. The
	// message id is not covered by the broker signature, so each iteration
	// gets a fresh id without re-sealing.
	payload, _ := json.Marshal(map[string]any{
		"type": "event_callback", "team_id": "T0123ABCD", "api_app_id": "A1", "event_id": "Ev1", "event_time": 1771465000,
		"event": map[string]any{"type": "message", "channel": "C0123ABCD", "user": "U0123ABCD", "ts": "1771464999.000100",
			"text": strings.Repeat("hello world ", 50), "blocks": []any{}},
	})
	const pool = 64
	sealed := make([]protocol.InboxMessage, pool)
	ts := time.Now().Unix()
	for i := range sealed {
		pt, _ := json.Marshal(protocol.Envelope{Source: "slack", Type: "event_callback", BrokerTimestamp: ts, Payload: payload})
		sealed[i], err = protocol.SealEnvelope(pt, "T0123ABCD", "x", ts, agentBox.Public, brokerSign)
		if err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	batch := make([]protocol.InboxMessage, 0, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := sealed[i%pool]
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
	if delivered != b.N {
		b.Fatalf("delivered %d of %d", delivered, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

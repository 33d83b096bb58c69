package redisstore_test

import (
	"context"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// BenchmarkAuditRecordRedis is one record appended to Redis through
// audit.Log: the extra latency a call or send pays per audit record (two
// per token use), serialized per process.
func BenchmarkAuditRecordRedis(b *testing.B) {
	c, prefix := testredis.New(b, "auditbench")
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		b.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.NewLog(redisstore.NewAuditStore(c, prefix), keys, audit.Options{CheckpointInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	ev := audit.Event{Kind: audit.KindCall, Phase: audit.PhaseIntent, Org: "T0123456", Agent: "ag-0123456789abcdef01234567", Method: "chat.postMessage", Channel: "C0123456", BytesIn: 300}
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Record(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

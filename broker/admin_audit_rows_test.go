package broker

import (
	"context"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
)

// TestAuditRows checks what the admin page's audit section shows:
// the newest records, newest last, with the fields the records hold.
func TestAuditRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	st := audit.NewMemStore()
	l, err := audit.NewLog(st, keys, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close(ctx) }()
	for _, ev := range []audit.Event{
		{Kind: audit.KindRegister, Org: "T1", Agent: "a1", Outcome: "ok"},
		{Kind: audit.KindCall, Phase: audit.PhaseIntent, Org: "T1", Agent: "a1", Method: "chat.postMessage", Channel: "C1"},
		{Kind: audit.KindRevoke, Org: "T1", Agent: "a1", Outcome: "ok"},
	} {
		if _, err := l.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := auditRows(ctx, st, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	if rows[0].Kind != "call" || rows[0].Summary != "phase=intent method=chat.postMessage channel=C1" || rows[0].AgentID != "a1" {
		t.Errorf("row 0 = %+v", rows[0])
	}
	if rows[1].Kind != "revoke" || rows[1].Seq != rows[0].Seq+1 || rows[1].OrgID != "T1" {
		t.Errorf("row 1 = %+v", rows[1])
	}
}

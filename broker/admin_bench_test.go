package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

// BenchmarkAdminAgents measures Admin.Agents (what `broker agents list`
// and the admin page run) over 200 agents in 10 orgs, each with a last
// pull and a queued message, on both engines.
func BenchmarkAdminAgents(b *testing.B) {
	for _, eng := range adminEngines {
		b.Run(eng.name, func(b *testing.B) {
			e := eng.open(b, queue.Options{})
			ctx := context.Background()
			now := time.Now()
			for i := range 200 {
				id := fmt.Sprintf("ag-%04d", i)
				e.addAgent(b, fmt.Sprintf("T%02d", i%10), id, now)
				if err := e.st.RecordPull(ctx, id, now); err != nil {
					b.Fatal(err)
				}
				if _, err := e.q.Enqueue(ctx, id, []byte(`{}`)); err != nil {
					b.Fatal(err)
				}
			}
			adm, err := NewAdmin(e.st, e.q, AdminOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				v, err := adm.Agents(ctx, "")
				if err != nil || len(v) != 200 {
					b.Fatalf("%d agents, %v", len(v), err)
				}
			}
		})
	}
}

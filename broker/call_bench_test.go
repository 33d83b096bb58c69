package broker

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// BenchmarkCall measures one /api/call round trip through the handler —
// verify the agent's signature, record the nonce in Redis, policy, open the
// body, rate-limit bucket in Redis, decrypt the bot token, chat.postMessage
// to the fake Slack over HTTP, seal Slack's answer under a fresh nonce.
// Request bodies are built (and encrypted by the agent) before the timer
// starts.
//
//	go test -run XXX -bench BenchmarkCall -benchtime 5000x ./broker
func BenchmarkCall(b *testing.B) {
	h := benchHarness(b, withConfig(func(c *Config) { c.CallPostRate = RateLimit{Rate: 1e6, Burst: 1e6} }))
	org, tok := h.install(slackfake.Install{TeamID: "T0BENCH4"})
	a := h.register(org, tok)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i], _ = a.callBody("chat.postMessage", protocol.EncodingJSON,
			map[string]any{"channel": "C1", "text": fmt.Sprint("benchmark reply ", i)}, a.now())
	}
	handler := h.srv.Handler()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(4)
	start, cpu0 := time.Now(), processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			req := httptest.NewRequest(http.MethodPost, "/api/call", bytes.NewReader(bodies[i]))
			req.Header.Set("Authorization", "Bearer "+a.token)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Errorf("status %d: %s", rec.Code, rec.Body.Bytes())
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/call")
}

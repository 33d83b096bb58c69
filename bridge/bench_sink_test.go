package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// BenchmarkSinkLatency measures one event's way from the fake broker's
// inbox to the local app, per sink, one event at a time: the long poll
// wakes up, the bridge verifies, opens, de-duplicates (fsync) and delivers,
// and the app has it — for Socket Mode a real slack-go client that also
// acks (the bridge then acks at the broker). ns/op is the latency.
// Run: go test -run x -bench SinkLatency -benchtime 200x ./bridge/
func BenchmarkSinkLatency(b *testing.B) {
	b.Run("socket_mode", func(b *testing.B) {
		sb := startSocketBridge(b, 3*time.Second, nil)
		app := connectApp(b, sb.base)
		benchSink(b, sb.fb, func() { ev := app.next(b); app.ack(b, ev, nil) })
	})
	b.Run("forward", func(b *testing.B) {
		app, url := newScriptedApp(b, func(fwdHit, http.ResponseWriter, *http.Request) {})
		fb := bridgetest.New(b, testOrg)
		cfg := baseConfig(b, newIdentity(b, fb), b.TempDir())
		cfg.ForwardURL, cfg.ForwardSigningSecret = url, []byte(localSecret)
		start(b, cfg)
		benchSink(b, fb, func() { app.next(b) })
	})
	b.Run("sse", func(b *testing.B) {
		fb := bridgetest.New(b, testOrg)
		ln := apiListener(b)
		cfg := baseConfig(b, newIdentity(b, fb), b.TempDir())
		cfg.Stream, cfg.ListenAddr = true, ln.Addr().String()
		r := start(b, cfg)
		base := serveAPI(b, ln, r.b)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					lines <- sc.Text()
				}
			}
		}()
		benchSink(b, fb, func() {
			select {
			case <-lines:
			case <-time.After(testTimeout):
				b.Fatal("no SSE event")
			}
		})
	})
}

func benchSink(b *testing.B, fb *bridgetest.FakeBroker, received func()) {
	// One warm-up event: connections open, first pull answered.
	fb.Enqueue(slackEvent("warm-up", "C0BENCH01", "1700000000.000001"))
	received()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fb.Enqueue(slackEvent("bench", "C0BENCH01", fmt.Sprintf("1700000001.%06d", i)))
		received()
	}
	b.StopTimer()
}

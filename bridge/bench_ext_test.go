package bridge_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// BenchmarkLocalSend measures POST /send on the local API end to end: HTTP
// to the bridge, validation, crypto_box with the cached shared key, Ed25519
// signature, HTTP to a scripted broker on loopback (which verifies the
// signature and opens the box) and the answer back.
// Run: go test -run x -bench LocalSend -cpu 1 ./bridge/
func BenchmarkLocalSend(b *testing.B) {
	fb := bridgetest.New(b, testOrg)
	id := newIdentity(b, fb)
	cfg := baseConfig(b, id, b.TempDir())
	cfg.Stream = true
	ln := apiListener(b)
	cfg.ListenAddr = ln.Addr().String()
	br, err := newBridge(b, cfg)
	if err != nil {
		b.Fatal(err)
	}
	base := serveAPI(b, ln, br)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	body := `{"channel":"C0123ABCD","text":"` + strings.Repeat("reply text ", 20) + `","thread_ts":"1771464999.000100"}`
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodPost, base+"/send", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}

// BenchmarkPipelineViaBroker measures whole poll cycles against the scripted
// broker on loopback: HTTP pull of 10 → verify → open → dedup → deliver to an
// in-process consumer → HTTP ack, per message. (The scripted broker's own
// work — JSON, signature checks on pull/ack — runs on the same CPU.)
// Run: go test -run x -bench PipelineViaBroker -cpu 1 ./bridge/
func BenchmarkPipelineViaBroker(b *testing.B) {
	fb := bridgetest.New(b, testOrg)
	id := newIdentity(b, fb)
	// Each Slack event has its own event_id (the bridge de-duplicates them).
	for i := 0; i < b.N; i++ {
		fb.EnqueueRaw(fb.Seal(slackEvent(strings.Repeat("hello world ", 50), "C0123ABCD", "1771464999."+strconv.Itoa(100000+i)), "b-"+strconv.Itoa(i)))
	}
	col := newCollector()
	col.ch = make(chan *bridge.Event, b.N)
	cfg := baseConfig(b, id, b.TempDir())
	cfg.Deliver = col.deliver
	b.ResetTimer()
	r := start(b, cfg)
	waitFor(b, fb, "all acked", func() bool { return fb.Pending() == 0 })
	b.StopTimer()
	r.stop(b)
	if len(col.ch) != b.N {
		b.Fatalf("delivered %d of %d", len(col.ch), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

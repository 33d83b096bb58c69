package bridge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

func TestMetrics(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	id := newIdentity(t, fb)
	col := newCollector()
	cfg := baseConfig(t, id, t.TempDir())
	cfg.Deliver = col.deliver
	r := start(t, cfg)
	good := slackEvent("x", "C1", "1.1")
	bad := fb.Seal(good, "poison-1")
	bad.Encrypted = "AAAA" + bad.Encrypted[4:]
	fb.EnqueueRaw(bad)
	fb.Enqueue(good)
	col.next(t)
	waitFor(t, fb, "acks", func() bool { return fb.Pending() == 0 })
	r.stop(t)
	srv := httptest.NewServer(r.b.MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		"sealrelay_bridge_messages_received_total 2",
		"sealrelay_bridge_messages_delivered_total 1",
		`sealrelay_bridge_messages_poison_total{reason="bad_signature"} 1`,
		"sealrelay_bridge_messages_acked_total 2",
		"sealrelay_bridge_consecutive_failures 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

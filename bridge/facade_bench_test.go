package bridge_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// BenchmarkFacadeCall measures one Slack Web API call through the bridge
// end to end: the real slack-go client posts chat.postMessage (form) to the
// facade, which parses it, seals the args with crypto_box (cached shared
// key), signs POST /api/call and sends it to a scripted broker on loopback;
// the broker verifies the signature, opens the body and seals Slack's
// answer under a fresh nonce, which the bridge opens and returns to
// slack-go.
// Run: go test -run x -bench FacadeCall -cpu 1 ./bridge/
func BenchmarkFacadeCall(b *testing.B) {
	f := newFacade(b, nil)
	f.fb.AnswerCalls(func(bridgetest.Call) bridgetest.CallAnswer {
		return bridgetest.CallAnswer{Body: []byte(`{"ok":true,"channel":"C0123ABCD","ts":"1771465000.000200","message":{"type":"message","text":"ok"}}`)}
	})
	api := slack.New("xoxb-anything", slack.OptionAPIURL(f.base+"/api/"),
		slack.OptionHTTPClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}))
	text := strings.Repeat("reply text ", 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := api.PostMessage("C0123ABCD", slack.MsgOptionText(text, false), slack.MsgOptionTS("1771464999.000100")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

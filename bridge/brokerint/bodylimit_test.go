package brokerint_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
)

// worstSend returns a /send body of exactly n bytes that grows the most on
// its way to the broker: 40,000 U+2028 characters of text (JSON escapes
// each from 3 to 6 bytes) and a block padded with '<' (which json.Marshal
// would escape from 1 to 6 bytes).
func worstSend(t testing.TB, n int) string {
	t.Helper()
	text := strings.Repeat("\u2028", bridge.MaxTextLength-1) + "x"
	head := `{"channel":"C0REAL","text":"` + text + `","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"`
	tail := `"}}]}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		t.Fatalf("limit %d too small for the worst case", n)
	}
	body := head + strings.Repeat("<", pad) + tail
	if !json.Valid([]byte(body)) || len(body) != n {
		t.Fatal("bad test body")
	}
	return body
}

// The documented local body limit holds end to end: a body of exactly
// bridge.MaxLocalBody bytes in the worst case for growth is accepted by
// the real broker (its sealed request fits protocol.MaxBodySize; the broker
// passes the call on to Slack, whose own answer — here the fake's refusal
// of a 640 KiB message — comes back), and one byte more is refused locally
// with 413 before anything is sent.
func TestRealBrokerBodyLimitEdge(t *testing.T) {
	rb := newRealBroker(t)
	org, token := rb.install("T0REAL07")
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: rb.url, OrgID: org, RegistrationToken: token, ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	id, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(*id, t.TempDir())
	cfg.Stream = true
	ln := apiListener(t)
	cfg.ListenAddr = ln.Addr().String()
	r := start(t, cfg)
	base := serveAPI(t, ln, r.b)

	cases := []struct {
		name   string
		size   int
		status int
		want   string
	}{
		{"at the limit", bridge.MaxLocalBody, 502, "invalid_form_data"}, // Slack's answer: the broker took it
		{"one byte over", bridge.MaxLocalBody + 1, 413, "limit 640 KiB"},
	}
	for _, tc := range cases {
		st, out := post(t, base, "/send", worstSend(t, tc.size))
		msg, _ := out["error"].(string)
		if st != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s (%d bytes): got %d %q, want %d %q", tc.name, tc.size, st, msg, tc.status, tc.want)
		}
	}
	if h := r.b.Health(); h.LastOutboundAt == nil {
		t.Fatal("no call reached the broker")
	}
}

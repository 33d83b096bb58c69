package broker

import (
	"context"
	"testing"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestStoredForm: copies go into the inbox as the JSON every broker version
// reads unless Config.CompactStored is set (as cmd/broker does for the
// embedded store), then in the binary form; either way the agent pulls
// the same verified event.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		opts      []harnessOpt
		wantFirst byte
	}{
		{"redis default", nil, '{'},
		{"redis compact", []harnessOpt{withConfig(func(c *Config) { c.CompactStored = true })}, 0x01},
		{"embedded", []harnessOpt{withEngine(engineBolt)}, 0x01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.opts...)
			org, tok := h.install(slackfake.Install{TeamID: "T0STORED"})
			c := h.register(org, tok)
			body, _ := eventBody(org, "stored form")
			h.postEvent(h.url, body)
			id := agentID(t, h, c)
			msgs, err := h.q.Pull(context.Background(), id, 10, 0)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("pull from the store: %d messages, %v", len(msgs), err)
			}
			if got := msgs[0].Body[0]; got != tc.wantFirst {
				t.Fatalf("stored copy starts with %#x, want %#x", got, tc.wantFirst)
			}
			if _, err := h.q.Ack(context.Background(), id, []string{msgs[0].Receipt}); err != nil {
				t.Fatal(err)
			}
			h.postEvent(h.url, func() []byte { b, _ := eventBody(org, "second"); return b }())
			got := c.pull(10, 0)
			if len(got) != 1 || got[0].Env.Type != "event_callback" {
				t.Fatalf("agent pulled %d messages: %+v", len(got), got)
			}
		})
	}
}

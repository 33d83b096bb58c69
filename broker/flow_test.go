package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// TestFullFlow: install → register → signed event → pull → ack → send, then
// no canary (bot token, message texts, registration and access tokens) in
// Redis or in the logs.
func TestFullFlow(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine)
		const botToken = "xoxb-CANARY-BOT-TOKEN-4f1e"
		const inText = "CANARY inbound text 77c1"
		const outText = "CANARY outbound text 91ad"
		org, regToken := h.install(slackfake.Install{TeamID: "T0FLOW01", TeamName: "Flow", BotToken: botToken})
		if org != "T0FLOW01" || len(regToken) < protocol.MinRegistrationTokenLength {
			t.Fatalf("install: org %q token length %d", org, len(regToken))
		}
		inst, err := h.st.GetInstallation(context.Background(), org)
		if err != nil {
			t.Fatal(err)
		}
		if inst.BotID != "B0FAKEBOT" || inst.AppID == "" || inst.BotUserID == "" || strings.Contains(inst.BotToken, "xoxb") {
			t.Fatalf("stored installation: %+v", inst)
		}
		agent := h.register(org, regToken)
		agent2 := h.register(org, h.freshRegToken(org, botToken))

		body, _ := eventBody(org, inText)
		h.postEvent(h.url, body)
		msgs := agent.pull(10, 0)
		if len(msgs) != 1 {
			t.Fatalf("pulled %d messages, want 1", len(msgs))
		}
		env := msgs[0].Env
		if env.Source != protocol.SourceSlack || env.Type != protocol.TypeEventCallback {
			t.Fatalf("envelope %s/%s", env.Source, env.Type)
		}
		var payload map[string]any
		if err := json.Unmarshal(env.Payload, &payload); err != nil || !strings.Contains(string(env.Payload), inText) {
			t.Fatalf("payload %s", env.Payload)
		}
		// The second agent got its own copy, sealed to its own key.
		m2 := agent2.pull(10, 0)
		if len(m2) != 1 || m2[0].Raw.Encrypted == msgs[0].Raw.Encrypted {
			t.Fatalf("second agent: %d messages", len(m2))
		}
		// Leased: not handed out again before the ack.
		if again := agent.pull(10, 0); len(again) != 0 {
			t.Fatalf("leased message delivered again: %d", len(again))
		}
		if n := agent.ack(msgs[0].ID); n != 1 {
			t.Fatalf("acked %d, want 1", n)
		}
		if n := agent.ack(msgs[0].ID, "unknown-id"); n != 0 {
			t.Fatalf("second ack removed %d, want 0", n)
		}
		agent2.ack(m2[0].ID)

		post := agent.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C1", ThreadTS: "1771465000.000100"}, map[string]any{"text": outText})
		if post.Channel != "C1" || post.TS == "" {
			t.Fatalf("post response %+v", post)
		}
		agent.send(protocol.ActionUpdate, protocol.Routing{Channel: "C1", Timestamp: post.TS}, map[string]any{"text": outText + " edited"})
		agent.send(protocol.ActionReact, protocol.Routing{Channel: "C1", Timestamp: post.TS, Emoji: "eyes"}, map[string]any{})
		fm := h.fake.Messages()
		if len(fm) != 1 || fm[0].Text != outText+" edited" || fm[0].ThreadTS != "1771465000.000100" || len(fm[0].Reactions) != 1 || fm[0].Reactions[0] != "eyes" {
			t.Fatalf("slack messages %+v", fm)
		}
		for _, c := range h.fake.CallsTo("chat.postMessage") {
			if c.Token != botToken {
				t.Fatalf("slack called with token %q", c.Token)
			}
		}
		// Blocks pass through.
		agent.send(protocol.ActionPostMessage, protocol.Routing{Channel: "C2"}, map[string]any{"text": "fallback",
			"blocks": []map[string]any{{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*hi*"}}}})
		if calls := h.fake.CallsTo("chat.postMessage"); !strings.Contains(calls[len(calls)-1].Params.Get("blocks"), "mrkdwn") {
			t.Fatalf("blocks not forwarded: %v", calls[len(calls)-1].Params)
		}

		// Unregister removes the agent, its token and its inbox.
		status, _, b := do(t, http.MethodDelete, h.url+"/api/register", agent.token, agent.unregisterBody(agent.now()), nil)
		if status != http.StatusOK {
			t.Fatalf("unregister: %d %s", status, b)
		}
		if status, _ := agent.pullRaw(agent.pullBody(1, 0, agent.now())); status != http.StatusUnauthorized {
			t.Fatalf("pull after unregister: %d", status)
		}
		h.assertNoSecrets(botToken, inText, outText, regToken, agent.token, agent2.token)
		if logs := h.logs.String(); !strings.Contains(logs, `"org_id":"T0FLOW01"`) || !strings.Contains(logs, `"request_id":`) {
			t.Fatal("logs lack org_id or request_id")
		}
		if got := counterValue(t, h.srv.m.eventsQueued); got != 2 {
			t.Fatalf("events_queued = %v, want 2", got)
		}
	})
}

// freshRegToken re-installs the app for org and returns the new token.
func (h *harness) freshRegToken(org string, botToken ...string) string {
	h.t.Helper()
	inst, err := h.st.GetInstallation(context.Background(), org)
	if err != nil {
		h.t.Fatal(err)
	}
	in := slackfake.Install{TeamID: inst.TeamID, EnterpriseID: inst.EnterpriseID,
		IsEnterpriseInstall: inst.IsEnterpriseInstall}
	if len(botToken) > 0 {
		in.BotToken = botToken[0]
	}
	o, tok := h.install(in)
	if o != org {
		h.t.Fatalf("reinstall routed to %q, want %q", o, org)
	}
	return tok
}

// TestTwoReplicas: an event enqueued through replica A reaches a long poll
// waiting on replica B; a send nonce accepted by A is a replay on B.
func TestTwoReplicas(t *testing.T) {
	h := newHarness(t)
	org, reg := h.install(slackfake.Install{TeamID: "T0REPL01"})
	agent := h.register(org, reg)
	srvB, _, _, _, urlB := h.newReplica()
	waiting := make(chan struct{}, 1)
	srvB.onLongPoll = func(string) { waiting <- struct{}{} }
	onB := *agent
	onB.base = urlB

	var wg sync.WaitGroup
	var got []openedMessage
	wg.Add(1)
	go func() {
		defer wg.Done()
		status, b := onB.pullRaw(onB.pullBody(10, 20, onB.now()))
		if status != http.StatusOK {
			t.Errorf("long poll on B: %d %s", status, b)
			return
		}
		var pr protocol.PullResponse
		_ = json.Unmarshal(b, &pr)
		for _, m := range pr.Messages {
			env, _, err := protocol.OpenEnvelope(m, h.keys.Signing.Public(), agent.box)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			got = append(got, openedMessage{ID: m.MessageID, Env: env})
		}
	}()
	<-waiting
	body, _ := eventBody(org, "hello across replicas")
	h.postEvent(h.url, body)
	wg.Wait()
	if len(got) != 1 || !strings.Contains(string(got[0].Env.Payload), "hello across replicas") {
		t.Fatalf("long poll on B returned %d messages", len(got))
	}
	// Ack on A what B handed out.
	if n := agent.ack(got[0].ID); n != 1 {
		t.Fatalf("ack on A: %d", n)
	}
	// Nonce replay across replicas.
	req := agent.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "once"}, agent.now())
	if status, _, b := agent.sendRaw(req); status != http.StatusOK {
		t.Fatalf("send on A: %d %s", status, b)
	}
	status, _, b := onB.sendRaw(req)
	if status != http.StatusConflict || !strings.Contains(errorText(t, b), protocol.ErrReplay) {
		t.Fatalf("replay on B: %d %s", status, b)
	}
	if n := len(h.fake.CallsTo("chat.postMessage")); n != 1 {
		t.Fatalf("slack saw %d posts, want 1", n)
	}
}

// TestDedupAcrossReplicas: Slack's retry of an event landing on another
// replica is not queued twice.
func TestDedupAcrossReplicas(t *testing.T) {
	h := newHarness(t)
	org, reg := h.install(slackfake.Install{TeamID: "T0DEDUP1"})
	agent := h.register(org, reg)
	_, _, _, _, urlB := h.newReplica()
	ev, _ := eventBody(org, "once only")
	h.postEvent(h.url, ev)
	h.postEvent(urlB, ev)
	if msgs := agent.pull(10, 0); len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
}

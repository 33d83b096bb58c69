package broker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
)

// auditHarness is a harness whose broker records into an in-memory audit
// store.
func auditHarness(t *testing.T, required bool) (*harness, *audit.MemStore, *audit.Keys) {
	t.Helper()
	st := audit.NewMemStore()
	var keys *audit.Keys
	h := newHarness(t, func(h *harness) {
		var err error
		if keys, err = audit.DeriveKeys(h.keys.Signing); err != nil {
			t.Fatal(err)
		}
		l, err := audit.NewLog(st, keys, audit.Options{CheckpointInterval: -1, Logger: slog.New(slog.NewJSONHandler(h.logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		h.cfg.Audit, h.cfg.AuditRequired = l, required
	})
	return h, st, keys
}

// auditRecords returns every stored record (one chain: one broker) and
// the raw bytes.
func auditRecords(t *testing.T, st *audit.MemStore) ([]*audit.Record, [][]byte) {
	t.Helper()
	ctx := context.Background()
	ids, _ := st.Chains(ctx)
	var recs []*audit.Record
	var raws [][]byte
	for _, id := range ids {
		rs, err := st.Range(ctx, id, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range rs {
			r, err := audit.Decode(raw)
			if err != nil {
				t.Fatalf("stored record does not decode: %v", err)
			}
			recs, raws = append(recs, r), append(raws, raw)
		}
	}
	audit.SortRecords(recs)
	return recs, raws
}

func recordsOf(recs []*audit.Record, kind audit.Kind) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// TestAuditRecordsEveryTokenUse: install, register, a call, a Slack error,
// a send, a re-install and an unregister each leave the records they
// should, with metadata and never argument text or tokens, and the chain
// verifies.
func TestAuditRecordsEveryTokenUse(t *testing.T) {
	t.Parallel()
	h, st, keys := auditHarness(t, false)
	bot := "xoxb-audit-bot-7f3a"
	org, tok := h.install(slackfake.Install{TeamID: "T0AUDIT1", TeamName: "Audit", BotToken: bot})
	a := h.register(org, tok)
	id := agentID(t, h, a)
	canary := "CANARY-AUDIT-ARG-5e1d"

	a.call("chat.postMessage", protocol.EncodingJSON, map[string]any{"channel": "C1", "text": canary})
	recs, _ := auditRecords(t, st)
	calls := recordsOf(recs, audit.KindCall)
	if len(calls) != 2 {
		t.Fatalf("one call left %d call records, want an intent and a result: %+v", len(calls), calls)
	}
	in, out := calls[0], calls[1]
	want := audit.Event{Kind: audit.KindCall, Phase: audit.PhaseIntent, Org: org, Agent: id, Method: "chat.postMessage", Channel: "C1", BytesIn: in.BytesIn}
	if in.Event != want || in.BytesIn <= int64(len(canary)) {
		t.Fatalf("intent = %+v, want %+v with bytes_in > %d", in.Event, want, len(canary))
	}
	if out.Phase != audit.PhaseResult || out.Ref != in.Seq || out.Outcome != "ok" || out.ErrorCode != "" || out.BytesOut <= 0 ||
		out.Org != org || out.Agent != id || out.Method != "chat.postMessage" || out.Channel != "C1" || out.Seq != in.Seq+1 {
		t.Fatalf("result = %+v (seq %d), want ok result of intent %d", out.Event, out.Seq, in.Seq)
	}

	h.fake.Script("chat.postMessage", slackfake.Reply{Error: "channel_not_found"})
	a.call("chat.postMessage", protocol.EncodingForm, map[string]string{"channel": "C9", "text": canary})
	msgTS := h.fake.AddMessage(slackfake.Message{Channel: "C1", Text: "to react to"})
	a.send(protocol.ActionReact, protocol.Routing{Channel: "C1", Timestamp: msgTS, Emoji: "eyes"}, map[string]any{})
	h.install(slackfake.Install{TeamID: "T0AUDIT1", TeamName: "Audit", BotToken: bot})
	if st, _, b := do(t, http.MethodDelete, h.url+"/api/register", a.token, a.unregisterBody(a.now()), nil); st != http.StatusOK {
		t.Fatalf("unregister: %d %s", st, b)
	}

	recs, raws := auditRecords(t, st)
	calls = recordsOf(recs, audit.KindCall)
	if len(calls) != 4 || calls[3].Outcome != "slack_error" || calls[3].ErrorCode != "channel_not_found" || calls[3].Channel != "C9" {
		t.Fatalf("slack error result = %+v", calls[len(calls)-1].Event)
	}
	sends := recordsOf(recs, audit.KindSend)
	if len(sends) != 2 || sends[0].Method != protocol.ActionReact || sends[0].Channel != "C1" || sends[1].Outcome != "ok" || sends[1].Ref != sends[0].Seq {
		t.Fatalf("send records = %+v", sends)
	}
	for _, k := range []struct {
		kind audit.Kind
		n    int
	}{{audit.KindInstall, 1}, {audit.KindReinstall, 1}, {audit.KindRegister, 1}, {audit.KindUnregister, 1}} {
		rs := recordsOf(recs, k.kind)
		if len(rs) != k.n || rs[0].Org != org {
			t.Fatalf("%s records = %+v, want %d for org %s", k.kind, rs, k.n, org)
		}
	}
	if r := recordsOf(recs, audit.KindUnregister)[0]; r.Agent != id {
		t.Fatalf("unregister names agent %q, want %s", r.Agent, id)
	}
	for i, raw := range raws {
		for _, secret := range []string{canary, bot, a.token, tok} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("record %d contains a secret or argument %q", i, secret)
			}
		}
	}
	rep, err := audit.Verify(context.Background(), st, keys)
	if err != nil || !rep.OK() || rep.Records() != int64(len(recs)) {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	h.assertNoSecrets(canary, bot)
}

// TestAuditRequiredRefusesUnrecordedCalls: with AuditRequired a call or
// send whose intent record cannot be written is refused with 503 and Slack
// never sees it; without it the call goes through and the failure is
// counted.
func TestAuditRequiredRefusesUnrecordedCalls(t *testing.T) {
	t.Parallel()
	for _, required := range []bool{true, false} {
		t.Run(map[bool]string{true: "required", false: "best effort"}[required], func(t *testing.T) {
			t.Parallel()
			h, st, _ := auditHarness(t, required)
			org, tok := h.install(slackfake.Install{TeamID: "T0AUDREQ", TeamName: "Req", BotToken: "xoxb-req"})
			a := h.register(org, tok)
			msgTS := h.fake.AddMessage(slackfake.Message{Channel: "C1", Text: "to react to"})
			st.SetFail(errors.New("audit store down"))
			posts, reacts := len(h.fake.CallsTo("chat.postMessage")), len(h.fake.CallsTo("reactions.add"))

			body, _ := a.callBody("chat.postMessage", protocol.EncodingForm, map[string]string{"channel": "C1", "text": "hi"}, a.now())
			status, _, b := a.callRaw(body)
			sstatus, _, sb := a.sendRaw(a.sendBody(protocol.ActionReact, protocol.Routing{Channel: "C1", Timestamp: msgTS, Emoji: "eyes"}, map[string]any{}, a.now()))
			gotPosts, gotReacts := len(h.fake.CallsTo("chat.postMessage"))-posts, len(h.fake.CallsTo("reactions.add"))-reacts
			errs := counterValue(t, h.srv.am.records.WithLabelValues("call", "error"))
			if required {
				for _, r := range []struct {
					what   string
					status int
					body   []byte
					slack  int
				}{{"call", status, b, gotPosts}, {"send", sstatus, sb, gotReacts}} {
					if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), ErrAuditUnavailable) || r.slack != 0 {
						t.Fatalf("%s with a failing audit store = %d %s, %d Slack calls; want 503 %s and none", r.what, r.status, r.body, r.slack, ErrAuditUnavailable)
					}
				}
				if errs != 1 {
					t.Fatalf("audit call errors counted = %v, want 1", errs)
				}
				return
			}
			if status != http.StatusOK || sstatus != http.StatusOK || gotPosts != 1 || gotReacts != 1 {
				t.Fatalf("best-effort audit: call %d %s, send %d %s, Slack calls %d/%d; want both made", status, b, sstatus, sb, gotPosts, gotReacts)
			}
			if errs != 2 { // intent and result
				t.Fatalf("audit call errors counted = %v, want 2", errs)
			}
		})
	}
}

func TestAuditRequiredNeedsRecorder(t *testing.T) {
	t.Parallel()
	cfg := Config{PublicURL: "https://b.example", SlackClientID: "c", SlackClientSecret: "s", SlackSigningSecret: "x", AuditRequired: true}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "AuditRequired") {
		t.Fatalf("Validate = %v, want an error naming AuditRequired", err)
	}
}

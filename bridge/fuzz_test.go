package bridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

func FuzzParseEnvFile(f *testing.F) {
	for _, s := range []string{
		"", "A=1\n", "export A=\"x y\"\n# c\n\nB='q'\n", "A=\"unterminated\n", "A=1 # comment\nA=2\n",
		"SLACK_BROKER_URL=https://b.example\r\nSLACK_BROKER_ORG_ID=T1\r\n", "1A=x\n", "garbage line\nK=\"a\\\"b\\\\c\\n\"\n",
	} {
		f.Add([]byte(s), "value with spaces # and $ \"quotes\"\n")
	}
	f.Fuzz(func(t *testing.T, data []byte, value string) {
		ef, err := ParseEnvFile(data)
		if err != nil {
			return
		}
		// Rendering and reparsing keeps every assignment.
		again, err := ParseEnvFile(ef.Bytes())
		if err != nil {
			t.Fatalf("reparse of rendered file failed: %v", err)
		}
		for _, k := range ef.Keys() {
			v1, _ := ef.Get(k)
			v2, ok := again.Get(k)
			if !ok || v1 != v2 {
				t.Fatalf("%s: %q became %q", k, v1, v2)
			}
		}
		// Any value we set survives a round trip, and other lines stay.
		if strings.ContainsRune(value, 0) {
			return
		}
		ef.Set(EnvAccessToken, value)
		back, err := ParseEnvFile(ef.Bytes())
		if err != nil {
			t.Fatalf("file with a set value does not parse: %v", err)
		}
		if got, _ := back.Get(EnvAccessToken); got != strings.TrimSpace(value) && got != value {
			t.Fatalf("set %q, read back %q", value, got)
		}
	})
}

func FuzzParseDedupLog(f *testing.F) {
	f.Add([]byte("1700000000 \"m-1\"\n1700000001 \"m-2\"\n"), "m-3")
	f.Add([]byte("garbage\n-1 \"x\"\n12 unquoted\n99 \"torn"), "id with \"quotes\" and \n newline")
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		_, _ = parseDedupLog(data)
		if id == "" {
			return
		}
		line := appendDedupLine(nil, id, 42)
		line = appendEventLine(line, id, 43)
		got, events := parseDedupLog(append(append([]byte{}, line...), line...))
		if len(got) != 1 || got[id] != 42 || len(events) != 1 || events[id] != 43 {
			t.Fatalf("round trip of %q: %v %v", id, got, events)
		}
	})
}

func FuzzThreadID(f *testing.F) {
	f.Add("event_callback", []byte(`{"event":{"channel":"C1","ts":"1.2","thread_ts":"1.1"}}`))
	f.Add("block_actions", []byte(`{"channel":{"id":"C1"},"container":{"message_ts":"1.2"}}`))
	f.Add("slash_command", []byte(`{"channel_id":"D1"}`))
	f.Add("x", []byte(`[1,2`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		id := ThreadIDFor(typ, payload)
		if id == "" {
			return
		}
		ch, ts, ok := ParseThreadID(id)
		if !ok || ch == "" || (ts != "" && id != ch+":"+ts) {
			t.Fatalf("derived thread id %q does not parse back", id)
		}
	})
}

func FuzzForwardBody(f *testing.F) {
	f.Add("slack", "slash_command", []byte(`{"command":"/x","text":"a&b=c","n":1,"z":null}`))
	f.Add("slack", "block_actions", []byte(`{"type":"block_actions","actions":[]}`))
	f.Add("slack", "event_callback", []byte(`{"type":"event_callback"}`))
	f.Add("system", "x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, source, typ string, payload []byte) {
		if !json.Valid(payload) {
			return
		}
		ev := &Event{Source: source, Type: typ, Payload: payload}
		body, ct, kind, err := forwardBody(ev)
		if err != nil {
			return
		}
		switch kind {
		case kindCommands, kindInteractivity:
			if ct != "application/x-www-form-urlencoded" {
				t.Fatal(ct)
			}
			v, err := url.ParseQuery(string(body))
			if err != nil {
				t.Fatalf("form body does not parse: %v", err)
			}
			if kind == kindInteractivity && !json.Valid([]byte(v.Get("payload"))) {
				t.Fatal("payload field is not JSON")
			}
		case kindEvents:
			if string(body) != string(payload) {
				t.Fatal("event body changed")
			}
		}
	})
}

// FuzzReceive feeds inbox messages built from fuzzed fields to the receive
// path: either raw (mostly bad signatures) or with fuzzed plaintext properly
// sealed and signed, so that envelope parsing, thread ids and delivery see
// arbitrary decrypted content. Every message must end delivered or poison
// (acked), never panic or stall.
func FuzzReceive(f *testing.F) {
	f.Add("m-1", "T0123ABCD", int64(5), []byte(`{"source":"slack","type":"event_callback","broker_timestamp":5,"payload":{"event":{"channel":"C1","ts":"1.2"}}}`), true)
	f.Add("m-2", "T0123ABCD", int64(5), []byte(`{"source":"slack","type":"slash_command","broker_timestamp":5,"payload":{"channel_id":"C1"}}`), true)
	f.Add("m-3", "T0123ABCD", int64(5), []byte(`{"source":"","type":"x","broker_timestamp":5,"payload":null}`), true)
	f.Add("", "T|X", int64(-1), []byte("garbage"), false)
	brokerSign, _ := crypto.GenerateSigningKey()
	brokerBox, _ := crypto.GenerateBoxKeyPair()
	agentBox, _ := crypto.GenerateBoxKeyPair()
	agentSign, _ := crypto.GenerateSigningKey()
	var delivered int
	br, err := New(Config{
		Identity: Identity{BrokerURLs: []string{"http://127.0.0.1:1"}, OrgID: "T0123ABCD", BoxKey: agentBox, SigningKey: agentSign,
			BrokerBoxKey: brokerBox.Public, BrokerSigningKey: brokerSign.Public(), AccessToken: "x"},
		StateDir: f.TempDir(), Stream: true, StreamBuffer: 10,
		Deliver: func(context.Context, *Event) error { delivered++; return nil },
	}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { br.Close() })
	f.Fuzz(func(t *testing.T, id, org string, ts int64, plaintext []byte, seal bool) {
		var m protocol.InboxMessage
		if seal {
			var err error
			m, err = protocol.SealEnvelope(plaintext, org, id, ts, agentBox.Public, brokerSign)
			if err != nil {
				t.Fatal(err)
			}
		} else {
			m = protocol.InboxMessage{MessageID: id, OrgID: org, WorkspaceID: org, Encrypted: string(plaintext), BrokerTimestamp: ts, BrokerSignature: string(plaintext)}
		}
		before := delivered
		acked, rest, err := br.process(context.Background(), []protocol.InboxMessage{m})
		if err != nil || len(rest) != 0 {
			// Only a delivery failure or a key change stops a batch; neither
			// can happen here (the key check fails to connect and is skipped).
			t.Fatalf("process: %v", err)
		}
		switch {
		case id == "" || len(id) > maxMessageIDLen:
			if len(acked) != 0 {
				t.Fatal("acked a message without a usable id")
			}
		case len(acked) != 1 || acked[0] != id:
			t.Fatalf("message %q not acked: %v", id, acked)
		}
		if delivered > before+1 {
			t.Fatal("delivered twice")
		}
	})
}

func FuzzSpoolParse(f *testing.F) {
	box, _ := crypto.GenerateBoxKeyPair()
	key := box.DeriveLocalKey(spoolKeyLabel)
	s := &spool{key: key}
	_ = s.record(spoolState, 0, make([]byte, 16))
	_ = s.record(spoolEvent, 7, []byte(`{"message_id":"m-1"}`))
	_ = s.record(spoolEvict, 3, nil)
	f.Add(append([]byte(nil), s.buf...))
	f.Add([]byte{0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		ld := (&spool{key: key}).parse(data)
		for i := 1; i < len(ld.items); i++ {
			if ld.items[i].seq <= ld.items[i-1].seq {
				t.Fatalf("items out of order: %d after %d", ld.items[i].seq, ld.items[i-1].seq)
			}
		}
	})
}

func FuzzCloseField(f *testing.F) {
	f.Add("thread-ts")
	f.Add("")
	f.Fuzz(func(t *testing.T, name string) {
		got := closestField(name, []string{"channel", "text", "thread_ts", "blocks"})
		if got != "" && got != "channel" && got != "text" && got != "thread_ts" && got != "blocks" {
			t.Fatalf("suggested %q", got)
		}
	})
}

// FuzzLoneSurrogate: a string hasLoneSurrogate reports decodes with a
// U+FFFD (encoding/json's replacement for it); one it accepts decodes with
// no more U+FFFD than the input spells (literally or as an escape).
func FuzzLoneSurrogate(f *testing.F) {
	f.Add(`"\ud800"`)
	f.Add(`"\ud83d\ude00"`)
	f.Add(`"\\ud800"`)
	f.Add(`"\ufffd"`)
	f.Fuzz(func(t *testing.T, s string) {
		var out string
		if !utf8.ValidString(s) || json.Unmarshal([]byte(s), &out) != nil {
			return
		}
		got := strings.Count(out, "\ufffd")
		spelled := strings.Count(strings.ToLower(s), `\ufffd`) + strings.Count(s, "\ufffd")
		if lone := hasLoneSurrogate([]byte(s)); lone && got == 0 || !lone && got > spelled {
			t.Fatalf("%q: lone=%v but decoding gave %d U+FFFD for %d spelled", s, lone, got, spelled)
		}
	})
}

// FuzzDropNotice: any events_dropped payload is handled without a panic,
// the total never shrinks and always equals the sum of the reasons.
func FuzzDropNotice(f *testing.F) {
	f.Add([]byte(`{"count":3,"reasons":{"inbox_full":2,"too_large":1},"first_dropped_at":1,"last_dropped_at":2,"event_ids":["Ev1"],"event_ids_truncated":false}`))
	f.Add([]byte(`{"count":-1}`))
	f.Add([]byte(`{"count":1,"reasons":{"x":-5,"inbox_full":9}}`))
	b := &Bridge{log: slog.New(slog.DiscardHandler), metrics: newMetrics()}
	f.Fuzz(func(t *testing.T, payload []byte) {
		before := b.health.BrokerDropped
		b.dropNotice("m-1", payload)
		if b.health.BrokerDropped < before {
			t.Fatal("total shrank")
		}
		var sum uint64
		for _, c := range b.health.BrokerDropReasons {
			sum += c
		}
		if sum != b.health.BrokerDropped {
			t.Fatalf("reasons sum to %d, total %d", sum, b.health.BrokerDropped)
		}
	})
}

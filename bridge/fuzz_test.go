package bridge

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
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
		_ = parseDedupLog(data)
		if id == "" {
			return
		}
		line := appendDedupLine(nil, id, 42)
		got := parseDedupLog(append(append([]byte{}, line...), line...))
		if len(got) != 1 || got[id] != 42 {
			t.Fatalf("round trip of %q: %v", id, got)
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

package bridge

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// eventJSONPayloads are payloads of the shapes the broker seals, and the
// escapes and whitespace json.Marshal rewrites.
var eventJSONPayloads = []string{
	`{"type":"event_callback","event_id":"Ev1","event":{"type":"message","channel":"C1","text":"hi"}}`,
	"{ \"a\" : [ 1 , 2 ,\t3 ] ,\n\"b\" :\r\n{ } }",
	`{"text":"<@U123> said a & b > c","x":"\u003c"}`,
	"{\"text\":\"line\u2028sep\u2029para \u20ac\"}",
	`{"text":"quote \" backslash \\ and \\\" and \/ and \n","k":"v"}`,
	`{"text":"a \\u003c literal and \\\\<"}`,
	`"just a string"`,
	`12.5e3`,
	`null`,
	`[true,false,null]`,
	`{"emoji":"🙂","cjk":"日本語","bad":"` + "\xff\xfe" + `"}`,
	`{"e2":"` + "\xe2\x80" + `"}`,
	`{"s":"` + strings.Repeat("hello world ", 50) + `"}`,
}

func TestAppendEventJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	events := []Event{
		{MessageID: "m-1", Source: "slack", Type: "event_callback", BrokerTimestamp: 1771465000, ThreadID: "C0123ABCD:1771464999.000100"},
		{MessageID: "m-2", Source: "system", Type: "events_dropped", BrokerTimestamp: -5},
		{MessageID: `m"<&>\` + "\n\u2028é", Source: "sl\tack", Type: "t", BrokerTimestamp: 0, ThreadID: "C1<x>"},
		{},
	}
	for _, payload := range append(eventJSONPayloads, "") {
		for _, ev := range events {
			if payload != "" {
				ev.Payload = json.RawMessage(payload)
			}
			want, wantErr := json.Marshal(&ev)
			prefix := []byte("prefix:")
			got, err := appendEventJSON(prefix, &ev)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("payload %q: error %v, json.Marshal's %v", payload, err, wantErr)
			}
			if !bytes.HasPrefix(got, []byte("prefix:")) {
				t.Fatalf("payload %q: dst prefix lost: %q", payload, got)
			}
			if err == nil && !bytes.Equal(got[len("prefix:"):], want) {
				t.Fatalf("payload %q:\n got %s\nwant %s", payload, got[len("prefix:"):], want)
			}
			if bytes.ContainsAny(got, "\r\n") {
				t.Fatalf("payload %q: a line break in the SSE data: %q", payload, got)
			}
		}
	}
}

func TestAppendCompactHTMLRefuses(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"\"raw\nnewline\"",
		"{\"a\":\"tab\tinside\"}",
		`{"a":"unterminated`,
		`"ends in an escape\"`,
	} {
		got, ok := appendCompactHTML([]byte("x"), []byte(src))
		if ok || string(got) != "x" {
			t.Errorf("%q: ok=%v dst=%q, want refused and dst unchanged", src, ok, got)
		}
	}
}

// FuzzAppendEventJSON checks that every valid JSON payload is encoded as
// json.Marshal encodes it, and that nothing produces a line break.
func FuzzAppendEventJSON(f *testing.F) {
	for _, p := range eventJSONPayloads {
		f.Add("m-1", "C1:1.2", []byte(p))
	}
	f.Fuzz(func(t *testing.T, id, thread string, payload []byte) {
		ev := &Event{MessageID: id, Source: "slack", Type: "event_callback", BrokerTimestamp: 7, ThreadID: thread, Payload: payload}
		got, err := appendEventJSON(nil, ev)
		if bytes.ContainsAny(got, "\r\n") {
			t.Fatalf("line break in %q", got)
		}
		if !json.Valid(payload) {
			return // not a payload an opened envelope can hold
		}
		want, wantErr := json.Marshal(ev)
		if err != nil || wantErr != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
		}
	})
}

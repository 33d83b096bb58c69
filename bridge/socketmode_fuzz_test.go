package bridge_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
)

func TestParseSocketAck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, id, payload string
		ok                    bool
	}{
		{"plain ack", `{"envelope_id":"e-1"}`, "e-1", "", true},
		{"object payload", `{"envelope_id":"e-1","payload":{"text":"hi"}}`, "e-1", `{"text":"hi"}`, true},
		{"string payload", `{"envelope_id":"e-1","payload":"hi"}`, "e-1", `"hi"`, true},
		{"null payload", `{"envelope_id":"e-1","payload":null}`, "e-1", "", true},
		{"extra fields", `{"envelope_id":"e-1","type":"x"}`, "e-1", "", true},
		{"no envelope id", `{"payload":{}}`, "", "", false},
		{"empty envelope id", `{"envelope_id":""}`, "", "", false},
		{"numeric envelope id", `{"envelope_id":7}`, "", "", false},
		{"array", `[{"envelope_id":"e-1"}]`, "", "", false},
		{"not json", `envelope_id=e-1`, "", "", false},
		{"truncated", `{"envelope_id":"e-1"`, "", "", false},
		{"long id", `{"envelope_id":"` + strings.Repeat("a", 129) + `"}`, "", "", false},
		{"too large", `{"envelope_id":"e-1","payload":"` + strings.Repeat("a", bridge.MaxSocketAckSize) + `"}`, "", "", false},
		{"bad utf8", "{\"envelope_id\":\"e-\xff\"}", "", "", false},
	}
	for _, tc := range cases {
		id, p, err := bridge.ParseSocketAck([]byte(tc.in))
		if (err == nil) != tc.ok || id != tc.id || string(p) != tc.payload {
			t.Errorf("%s: id %q payload %s err %v", tc.name, id, p, err)
		}
	}
}

func TestAnswerNormalisation(t *testing.T) {
	t.Parallel()
	big := `{"text":"` + strings.Repeat("a", bridge.MaxRespondSize) + `"}`
	cases := []struct {
		name, in, want string
		http, ok       bool
	}{
		{"socket object", `{"text":"x"}`, `{"text":"x"}`, false, true},
		{"socket string", `"hi"`, `{"text":"hi"}`, false, true},
		{"socket empty string", `""`, "", false, true},
		{"socket none", ``, "", false, true},
		{"socket array", `[1]`, "", false, false},
		{"socket number", `3`, "", false, false},
		{"socket too large", big, "", false, false},
		{"http json", `{"response_action":"clear"}`, `{"response_action":"clear"}`, true, true},
		{"http text", "ok, on it\n", `{"text":"ok, on it"}`, true, true},
		{"http text that looks like json", `{not json`, `{"text":"{not json"}`, true, true},
		{"http empty", "  ", "", true, true},
		{"http binary", "\xff\xfe", "", true, false},
		{"http too large", big, "", true, false},
	}
	for _, tc := range cases {
		var got []byte
		var err error
		if tc.http {
			got, err = bridge.AnswerFromHTTP([]byte(tc.in))
		} else {
			got, err = bridge.AnswerFromSocket([]byte(tc.in))
		}
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("%s: %s err %v", tc.name, got, err)
		}
	}
}

// FuzzSocketAck: the ack parser never panics, accepts only objects with a
// bounded envelope id, and returns a payload that is valid JSON.
func FuzzSocketAck(f *testing.F) {
	for _, s := range []string{`{"envelope_id":"e-1"}`, `{"envelope_id":"e","payload":{"a":[1,2]}}`, `{"envelope_id":"e","payload":"t"}`,
		`{"envelope_id":null}`, `[]`, ``, `{"envelope_id":"\ud800"}`, `{"envelope_id":"e","envelope_id":"f"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, p, err := bridge.ParseSocketAck(data)
		if err != nil {
			if id != "" || p != nil {
				t.Fatal("error with a result")
			}
			return
		}
		if id == "" || len(id) > 128 || len(data) > bridge.MaxSocketAckSize {
			t.Fatalf("accepted id %q from %d bytes", id, len(data))
		}
		if p != nil && (!json.Valid(p) || bytes.Equal(p, []byte("null"))) {
			t.Fatalf("payload %q", p)
		}
		if a, err := bridge.AnswerFromSocket(p); err == nil && a != nil {
			var obj map[string]json.RawMessage
			if json.Unmarshal(a, &obj) != nil || len(a) > bridge.MaxRespondSize {
				t.Fatalf("answer %q is not a bounded JSON object", a)
			}
		}
	})
}

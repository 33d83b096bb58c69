package bridge

import (
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
	"github.com/sealrelay/sealrelay/protocol"
)

// legacyThreadPayload and legacyInspectPayload are inspectPayload as it was
// before payloadScan (json.Unmarshal and regular expressions): the reference
// it must match.
var (
	legacyChannelPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{1,40}$`)
	legacyTSPattern      = regexp.MustCompile(`^[0-9]{1,20}\.[0-9]{1,20}$`)
)

type legacyThreadPayload struct {
	// Events API
	Event *struct {
		Channel  string `json:"channel"`
		TS       string `json:"ts"`
		ThreadTS string `json:"thread_ts"`
		Item     *struct {
			Channel string `json:"channel"`
			TS      string `json:"ts"`
		} `json:"item"`
	} `json:"event"`
	// Interactivity
	Channel *struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container *struct {
		ChannelID string `json:"channel_id"`
		MessageTS string `json:"message_ts"`
		ThreadTS  string `json:"thread_ts"`
	} `json:"container"`
	Message *struct {
		TS       string `json:"ts"`
		ThreadTS string `json:"thread_ts"`
	} `json:"message"`
	// Slash commands (form fields)
	ChannelID string `json:"channel_id"`
	// EventID is the Slack event id of an Events API callback.
	EventID string `json:"event_id"`
	// APIAppID names the Slack app (Socket Mode hello default).
	APIAppID string `json:"api_app_id"`
}

func legacyInspectPayload(typ string, payload []byte) payloadInfo {
	var p legacyThreadPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			// A field of an unexpected shape: no thread, but the rest
			// (the app id) was still read.
			return payloadInfo{appID: p.APIAppID}
		}
		return payloadInfo{}
	}
	info := payloadInfo{appID: p.APIAppID}
	if typ == protocol.TypeEventCallback && len(p.EventID) <= maxEventIDLen {
		info.eventID = p.EventID
	}
	var ch, ts string
	switch {
	case p.Event != nil:
		ch, ts = p.Event.Channel, first(p.Event.ThreadTS, p.Event.TS)
		if ch == "" && p.Event.Item != nil {
			ch, ts = p.Event.Item.Channel, p.Event.Item.TS
		}
	case p.Channel != nil || p.Container != nil:
		if p.Channel != nil {
			ch = p.Channel.ID
		}
		if p.Container != nil {
			ch = first(ch, p.Container.ChannelID)
			ts = first(p.Container.ThreadTS, p.Container.MessageTS)
		}
		if p.Message != nil {
			ts = first(p.Message.ThreadTS, ts, p.Message.TS)
		}
	default:
		ch = p.ChannelID
	}
	switch {
	case !legacyChannelPattern.MatchString(ch):
	case !legacyTSPattern.MatchString(ts):
		info.threadID = ch
	default:
		info.threadID = ch + ":" + ts
	}
	return info
}

// checkInspectPayload compares inspectPayload with legacyInspectPayload on
// one payload, and, when payloadScan is sure, its decoded struct with what
// json.Unmarshal decodes (the whole struct without a type error, the app id
// with one). It returns the result and whether payloadScan was sure.
func checkInspectPayload(t *testing.T, typ string, payload []byte) (payloadInfo, bool) {
	t.Helper()
	got, want := inspectPayload(typ, payload), legacyInspectPayload(typ, payload)
	if got != want {
		t.Fatalf("%q: got %+v, encoding/json %+v", payload, got, want)
	}
	var sc payloadScan
	typeErr, ok := sc.scan(payload)
	if !ok {
		return got, false
	}
	var ref threadPayload
	err := json.Unmarshal(payload, &ref)
	var ute *json.UnmarshalTypeError
	switch want := fieldsOf(&ref); {
	case typeErr != errors.As(err, &ute):
		t.Fatalf("%q: scan type error %v, encoding/json %v", payload, typeErr, err)
	case !typeErr && err != nil:
		t.Fatalf("%q: scan sure, encoding/json %v", payload, err)
	case typeErr && sc.f.appID != want.appID:
		t.Fatalf("%q: app id %q, encoding/json %q", payload, sc.f.appID, want.appID)
	case !typeErr && sc.f != want:
		t.Fatalf("%q: scanned %+v, encoding/json %+v", payload, sc.f, want)
	}
	return got, true
}

// TestInspectPayloadDecoding covers the edge cases of payloadScan against
// encoding/json, and that Slack's usual payloads do not fall back.
func TestInspectPayloadDecoding(t *testing.T) {
	t.Parallel()
	const cb = protocol.TypeEventCallback
	tests := []struct {
		name, typ, payload string
		want               payloadInfo
		sure               bool // payloadScan decodes it without json.Unmarshal
	}{
		{"message event", cb, `{"token":"x","team_id":"T1","api_app_id":"A1","event":{"type":"message","channel":"C1","user":"U1","text":"hi \u00e9 \"q\"","ts":"1.2","blocks":[{"type":"rich_text","elements":[]}]},"type":"event_callback","event_id":"Ev1","event_time":1,"authorizations":[{"team_id":"T1","is_bot":true}]}`,
			payloadInfo{threadID: "C1:1.2", eventID: "Ev1", appID: "A1"}, true},
		{"thread reply", cb, `{"event":{"channel":"C1","ts":"1.3","thread_ts":"1.2"}}`, payloadInfo{threadID: "C1:1.2"}, true},
		{"reaction item", cb, `{"event":{"type":"reaction_added","item":{"type":"message","channel":"C9","ts":"5.6"}}}`, payloadInfo{threadID: "C9:5.6"}, true},
		{"block actions", "block_actions", `{"type":"block_actions","api_app_id":"A1","channel":{"id":"C1","name":"x"},"container":{"type":"message","message_ts":"1.2","channel_id":"C2"},"message":{"ts":"1.2","thread_ts":"1.1","text":"é"}}`,
			payloadInfo{threadID: "C1:1.1", appID: "A1"}, true},
		{"container only", "block_actions", `{"container":{"channel_id":"G1","thread_ts":"3.4"}}`, payloadInfo{threadID: "G1:3.4"}, true},
		{"slash command", protocol.TypeSlashCommand, `{"command":"/x","channel_id":"D1","text":"a&b"}`, payloadInfo{threadID: "D1"}, true},
		{"no channel", "view_submission", `{"type":"view_submission","view":{"id":"V1"}}`, payloadInfo{}, true},
		{"event id only for callbacks", "block_actions", `{"event_id":"Ev1","channel_id":"C1"}`, payloadInfo{threadID: "C1"}, true},
		{"overlong event id", cb, `{"event_id":"` + strings.Repeat("E", maxEventIDLen+1) + `"}`, payloadInfo{}, true},
		{"longest event id", cb, `{"event_id":"` + strings.Repeat("E", maxEventIDLen) + `"}`, payloadInfo{eventID: strings.Repeat("E", maxEventIDLen)}, true},
		{"keys ignore ASCII case", cb, `{"EVENT":{"Channel":"C1","TS":"1.2"},"Api_App_Id":"A1","Event_ID":"Ev1"}`,
			payloadInfo{threadID: "C1:1.2", eventID: "Ev1", appID: "A1"}, true},
		{"duplicate keys take the last", cb, `{"api_app_id":"A1","api_app_id":"A2","event":{"channel":"C1"},"event":{"ts":"1.2"}}`,
			payloadInfo{threadID: "C1:1.2", appID: "A2"}, true},
		{"null keeps a string", cb, `{"api_app_id":"A1","api_app_id":null,"event":{"channel":"C1","channel":null}}`, payloadInfo{threadID: "C1", appID: "A1"}, true},
		{"null clears an object", cb, `{"event":{"channel":"C1"},"event":null,"channel_id":"C2"}`, payloadInfo{threadID: "C2"}, true},
		{"object after null is new", cb, `{"event":{"channel":"C1","item":{"ts":"9.9"}},"event":null,"event":{"item":{"channel":"C3"}}}`, payloadInfo{threadID: "C3"}, true},
		{"channel object event", cb, `{"api_app_id":"A1","event_id":"Ev1","event":{"type":"channel_created","channel":{"id":"C1"}}}`, payloadInfo{appID: "A1"}, true},
		{"type error keeps decoding", cb, `{"event":"x","api_app_id":"A1","api_app_id":7,"channel_id":"C1"}`, payloadInfo{appID: "A1"}, true},
		{"mistyped string", cb, `{"channel_id":["C1"],"api_app_id":"A3"}`, payloadInfo{appID: "A3"}, true},
		{"null payload", cb, `null`, payloadInfo{}, true},
		{"array payload", cb, ` [1,{"api_app_id":"A1"}] `, payloadInfo{}, true},
		{"string payload", cb, `"x"`, payloadInfo{}, true},
		{"escaped kept string", cb, `{"api_app_id":"A\u0031","channel_id":"C1"}`, payloadInfo{threadID: "C1", appID: "A1"}, false},
		{"escaped key", cb, `{"api_app_\u0069d":"A1"}`, payloadInfo{appID: "A1"}, false},
		{"key folding beyond ASCII", cb, `{"api_app_\u0131d":"A1","event":{"channel":"C1","thread_t\u017f":"1.2"}}`, payloadInfo{threadID: "C1:1.2"}, false},
		{"escaped key in a skipped object", cb, `{"event":{"channel":"C1","blocks":[{"t\u00e9xt":"\u00e9"}]}}`, payloadInfo{threadID: "C1"}, true},
		{"not json", cb, `{"api_app_id":"A2"`, payloadInfo{}, false},
		{"trailing data", cb, `{"api_app_id":"A2"} x`, payloadInfo{}, false},
		{"bad null", cb, `{"event":nul}`, payloadInfo{}, false},
		{"empty", cb, ``, payloadInfo{}, false},
		{"too deep", cb, `{"api_app_id":"A1","x":` + strings.Repeat("[", jsonscan.MaxDepth) + strings.Repeat("]", jsonscan.MaxDepth) + `}`, payloadInfo{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, sure := checkInspectPayload(t, tc.typ, []byte(tc.payload))
			if got != tc.want || sure != tc.sure {
				t.Fatalf("got %+v (sure %v), want %+v (sure %v)", got, sure, tc.want, tc.sure)
			}
		})
	}
}

// FuzzInspectPayload compares inspectPayload (and payloadScan's decoded
// struct) with the encoding/json reference on arbitrary payloads.
func FuzzInspectPayload(f *testing.F) {
	f.Add(protocol.TypeEventCallback, []byte(`{"api_app_id":"A1","event_id":"Ev1","event":{"channel":"C1","ts":"1.2","thread_ts":"1.1","item":{"channel":"C2","ts":"3.4"}}}`))
	f.Add("block_actions", []byte(`{"channel":{"id":"C1"},"container":{"channel_id":"C2","message_ts":"1.2","thread_ts":"1.1"},"message":{"ts":"1.2","thread_ts":null}}`))
	f.Add(protocol.TypeSlashCommand, []byte(`{"channel_id":"D1","CHANNEL_ID":"D2","text":"\u00e9"}`))
	f.Add(protocol.TypeEventCallback, []byte(`{"event":{"channel":{"id":"C1"}},"event":null,"api_app_id":"A\u0031"}`))
	f.Add("x", []byte(`[1,2`))
	f.Add("x", []byte(`null`))
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		checkInspectPayload(t, typ, payload)
	})
}

// BenchmarkInspectPayload measures reading thread, event and app id from
// an ordinary Events API payload (~1 KiB): json.Unmarshal (legacy) against
// payloadScan.
//
//	go test -run XXX -bench InspectPayload -benchmem ./bridge/
func BenchmarkInspectPayload(b *testing.B) {
	payloads := map[string][]byte{}
	payloads["event"], _ = json.Marshal(map[string]any{
		"token": "t", "type": "event_callback", "team_id": "T0123ABCD", "api_app_id": "A0123ABCD", "event_id": "Ev0123ABCD",
		"event_time": 1771465000, "authorizations": []any{map[string]any{"team_id": "T0123ABCD", "is_bot": true}},
		"event": map[string]any{"type": "message", "channel": "C0123ABCD", "user": "U0123ABCD", "ts": "1771464999.000100",
			"text": strings.Repeat("hello world ", 50), "blocks": []any{}},
	})
	payloads["block_actions"], _ = json.Marshal(map[string]any{
		"type": "block_actions", "api_app_id": "A0123ABCD", "channel": map[string]any{"id": "C0123ABCD", "name": "general"},
		"container": map[string]any{"type": "message", "message_ts": "1771464999.000100", "channel_id": "C0123ABCD"},
		"message":   map[string]any{"ts": "1771464999.000100", "text": strings.Repeat("hello world ", 50)},
		"actions":   []any{map[string]any{"action_id": "a" + strconv.Itoa(1), "value": "v"}},
	})
	for _, name := range []string{"event", "block_actions"} {
		payload := payloads[name]
		typ := protocol.TypeEventCallback
		if name != "event" {
			typ = name
		}
		b.Run(name+"/legacy", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if legacyInspectPayload(typ, payload).threadID == "" {
					b.Fatal("no thread")
				}
			}
		})
		b.Run(name+"/new", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if inspectPayload(typ, payload).threadID == "" {
					b.Fatal("no thread")
				}
			}
		})
	}
}

// checkIDPatterns compares isChannelID and isMessageTS with the regular
// expressions they replace.
func checkIDPatterns(t *testing.T, s string) {
	t.Helper()
	if got, want := isChannelID(s), legacyChannelPattern.MatchString(s); got != want {
		t.Fatalf("isChannelID(%q) = %v, regexp %v", s, got, want)
	}
	if got, want := isMessageTS(s), legacyTSPattern.MatchString(s); got != want {
		t.Fatalf("isMessageTS(%q) = %v, regexp %v", s, got, want)
	}
}

func TestIDPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s           string
		channel, ts bool
	}{
		{"C1", true, false}, {"G0123ABCD", true, false}, {"D" + strings.Repeat("9", 40), true, false},
		{"D" + strings.Repeat("9", 41), false, false}, {"C", false, false}, {"c1", false, false}, {"X1", false, false},
		{"C1a", false, false}, {"C1\n", false, false}, {"C-1", false, false}, {"", false, false}, {"CÉ", false, false},
		{"1.2", false, true}, {"1771464999.000100", false, true}, {strings.Repeat("1", 20) + "." + strings.Repeat("2", 20), false, true},
		{strings.Repeat("1", 21) + ".2", false, false}, {"1." + strings.Repeat("2", 21), false, false}, {".2", false, false},
		{"1.", false, false}, {"1.2.3", false, false}, {"1..2", false, false}, {"-1.2", false, false}, {"1.2\n", false, false}, {"1,2", false, false},
	}
	for _, tc := range tests {
		if isChannelID(tc.s) != tc.channel || isMessageTS(tc.s) != tc.ts {
			t.Errorf("%q: channel %v, ts %v; want %v, %v", tc.s, isChannelID(tc.s), isMessageTS(tc.s), tc.channel, tc.ts)
		}
		checkIDPatterns(t, tc.s)
	}
}

func FuzzIDPatterns(f *testing.F) {
	for _, s := range []string{"C1", "D0123ABCD", "1.2", "1771464999.000100", "1.2.3", "C1\n", ""} {
		f.Add(s)
	}
	f.Fuzz(checkIDPatterns)
}

package broker

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// eventsSamples are Events API bodies, ordinary and odd.
var eventsSamples = []string{
	`{"token":"t","team_id":"T1","api_app_id":"A1","type":"event_callback","event_id":"Ev1","event_time":1771465000,"event":{"type":"app_mention","user":"U1","text":"hi <@U2> & \"q\" \u00e9","ts":"1.2","channel":"C1","blocks":[{"type":"rich_text","elements":[1,2.5,-3e-2,true,false,null,{}]}]},"authorizations":[{"team_id":"T1","is_bot":true,"is_enterprise_install":false}]}`,
	`{"type":"url_verification","challenge":"abc123","token":"x"}`,
	`{"type":"event_callback","team_id":"T1","enterprise_id":"E1","is_enterprise_install":true,"event":{"type":"tokens_revoked","tokens":{"oauth":["U1"],"bot":["B1","B2"]}}}`,
	`{"type":"event_callback","event":{"type":"tokens_revoked","tokens":{"bot":[]}}}`,
	`{"type":"event_callback","event":{"type":"tokens_revoked","tokens":{"bot":null}},"authorizations":[]}`,
	`{"type":"app_rate_limited","team_id":"T1","minute_rate_limited":1518467820}`,
	` { "TYPE" : "event_callback" , "Team_Id":"T1", "event" : null , "authorizations" : null } `,
	`{"type":"event_callback","authorizations":[{"team_id":"T1"},{"enterprise_id":"E1","is_enterprise_install":null}]}`,
	`{}`, `null`, ``, `[]`, `"x"`, `{"type":1}`, `{"type":"a","type":"b"}`, `{"Type":"a","type":"b"}`,
	`{"type":"a\u0062"}`, `{"type":"\u00e9"}`, "{\"type\":\"\xff\"}", `{"type":"a"} x`, `{"type":"a",}`,
	`{"event":{"type":"x"},"event":{"tokens":{"bot":["B"]}}}`, `{"authorizations":[null]}`, `{"authorizations":[1]}`,
	`{"x":01}`, `{"x":1.}`, `{"x":-}`, `{"x":1e}`, `{"x":"\q"}`, `{"x":"\u12"}`, "{\"x\":\"a\x01\"}", `{"x":tru}`,
	`{"x":[1,]}`, `{"x":{"a":1,}}`, `{"x"}`, `{"x":1`, `{"ſype":"a"}`, `{"\u0074ype":"a"}`,
	`{"is_enterprise_install":"true"}`, `{"event":{"tokens":{"bot":[null]}}}`, `{"event":{"tokens":{"bot":["a","a"]}}}`,
	strings.Repeat(`{"x":`, 100) + `1` + strings.Repeat(`}`, 100),
	`{"type":"event_callback","event":{"type":"message","text":"` + strings.Repeat("long ", 500) + `"}}`,
}

// checkEventsBody fails unless decodeEventsBody decodes body as
// json.Unmarshal does, errors included.
func checkEventsBody(t *testing.T, body []byte) {
	t.Helper()
	var want, got eventsBody
	wantErr := json.Unmarshal(body, &want)
	gotErr := decodeEventsBody(body, &got)
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("decodeEventsBody(%q) error %v, json.Unmarshal %v", body, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeEventsBody(%q) = %+v, json.Unmarshal %+v", body, got, want)
	}
	var fast eventsBody
	if decodeEventsFast(body, &fast) && (wantErr != nil || !reflect.DeepEqual(fast, want)) {
		t.Fatalf("fast path decoded %q to %+v; json.Unmarshal: %+v, %v", body, fast, want, wantErr)
	}
}

func TestDecodeEventsBodyMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	for _, b := range eventsSamples {
		checkEventsBody(t, []byte(b))
	}
}

// TestDecodeEventsBodyFastPath checks that Slack's ordinary bodies take the
// fast path (else the file would be dead code).
func TestDecodeEventsBodyFastPath(t *testing.T) {
	t.Parallel()
	for _, b := range eventsSamples[:9] {
		var ev eventsBody
		if !decodeEventsFast([]byte(b), &ev) {
			t.Errorf("fast path not taken for %s", b)
		}
	}
}

func FuzzDecodeEventsBody(f *testing.F) {
	for _, b := range eventsSamples {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkEventsBody(t, body) })
}

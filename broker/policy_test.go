package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testAgentID = "ag-0123456789abcdef01234567"

// TestParseCallPolicy: valid documents and every validation error, which
// names the file, the entry and the field.
func TestParseCallPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{"empty object", `{}`, ""},
		{"default only", `{"default":{"methods":["chat.postMessage","reactions."],"channels":["C1"]}}`, ""},
		{"org and agent rules", `{"rules":[{"org_id":"T0A","methods":["@default","files.list"]},{"agent_id":"` + testAgentID + `","methods":["auth.test"],"channels":["*"]}]}`, ""},
		{"syntax error", `{"rules":[`, "invalid JSON"},
		{"unknown top-level field", `{"defaults":{}}`, `unknown field "defaults"`},
		{"trailing data", `{} {}`, "trailing data"},
		{"unknown rule field", `{"rules":[{"org_id":"T0A","methods":[],"channel":["C1"]}]}`, `rules[0]: unknown field "channel"`},
		{"unknown default field", `{"default":{"method":["x.y"]}}`, `default: unknown field "method"`},
		{"rule without id", `{"rules":[{"methods":["auth.test"]}]}`, "rules[0]: org_id or agent_id is required"},
		{"rule with both ids", `{"rules":[{"org_id":"T0A","agent_id":"` + testAgentID + `","methods":[]}]}`, "not both"},
		{"bad org id", `{"rules":[{"org_id":"T0|A","methods":[]}]}`, `rules[0] (org_id "T0|A"): org_id`},
		{"bad agent id", `{"rules":[{"agent_id":"agent-1","methods":[]}]}`, `rules[0] (agent_id "agent-1"): agent_id`},
		{"duplicate org", `{"rules":[{"org_id":"T0A","methods":[]},{"org_id":"T0A","methods":[]}]}`, `rules[1] (org_id "T0A"): org_id: a rule for this org appears earlier`},
		{"duplicate agent", `{"rules":[{"agent_id":"` + testAgentID + `","methods":[]},{"agent_id":"` + testAgentID + `","methods":[]}]}`, "appears earlier"},
		{"methods missing", `{"rules":[{"org_id":"T0A"}]}`, `rules[0] (org_id "T0A"): methods: required`},
		{"glob method", `{"rules":[{"org_id":"T0A","methods":["auth.test","chat.*"]}]}`, `methods[1] "chat.*"`},
		{"bad prefix", `{"default":{"methods":["Chat."]}}`, `default: methods[0] "Chat."`},
		{"bare word", `{"default":{"methods":["chat"]}}`, `methods[0] "chat"`},
		{"empty channels", `{"default":{"methods":[],"channels":[]}}`, "channels: empty list"},
		{"bad channel", `{"default":{"methods":[],"channels":["#general"]}}`, `channels[0] "#general"`},
		{"star with others", `{"default":{"methods":[],"channels":["C1","*"]}}`, `channels[1]: "*" must be the only entry`},
		{"ids in default", `{"default":{"org_id":"T0A","methods":[]}}`, "belong in rules"},
		{"wrong type", `{"rules":[{"org_id":"T0A","methods":"chat."}]}`, "rules[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseCallPolicy("/etc/sealrelay/policy.json", []byte(tt.doc))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "/etc/sealrelay/policy.json") {
				t.Fatalf("error %v, want it to name the file and contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestCallPolicyDecisions: the default list, most-specific-rule-wins and
// channel checks.
func TestCallPolicyDecisions(t *testing.T) {
	t.Parallel()
	p, err := ParseCallPolicy("p", []byte(`{
		"default":{"methods":["@default","files.list"]},
		"rules":[{"org_id":"T0A","methods":["chat.postMessage"],"channels":["C1"]},
		         {"agent_id":"`+testAgentID+`","methods":["users."]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var builtin *CallPolicy
	tests := []struct {
		name          string
		p             *CallPolicy
		agent, org, m string
		want          bool
	}{
		{"builtin chat prefix", builtin, "ag", "T0Z", "chat.startStream", true},
		{"builtin streaming", builtin, "ag", "T0Z", "chat.appendStream", true},
		{"builtin assistant", builtin, "ag", "T0Z", "assistant.threads.setStatus", true},
		{"builtin upload", builtin, "ag", "T0Z", "files.getUploadURLExternal", true},
		{"builtin auth.test", builtin, "ag", "T0Z", "auth.test", true},
		{"builtin refuses admin", builtin, "ag", "T0Z", "admin.users.list", false},
		{"builtin refuses apps", builtin, "ag", "T0Z", "apps.uninstall", false},
		{"builtin refuses auth.revoke", builtin, "ag", "T0Z", "auth.revoke", false},
		{"builtin refuses users.admin", builtin, "ag", "T0Z", "users.admin.invite", false},
		{"builtin refuses files.upload", builtin, "ag", "T0Z", "files.upload", false},
		{"builtin refuses files.list", builtin, "ag", "T0Z", "files.list", false},
		{"prefix needs the dot", builtin, "ag", "T0Z", "chatty.x", false},
		{"file default extends", p, "ag", "T0Z", "files.list", true},
		{"org rule replaces default", p, "ag", "T0A", "reactions.add", false},
		{"org rule allows", p, "ag", "T0A", "chat.postMessage", true},
		{"agent rule beats org", p, testAgentID, "T0A", "chat.postMessage", false},
		{"agent rule prefix", p, testAgentID, "T0A", "users.admin.setInactive", true},
	}
	for _, tt := range tests {
		if got := tt.p.AllowsMethod(tt.agent, tt.org, tt.m); got != tt.want {
			t.Errorf("%s: AllowsMethod(%s) = %v", tt.name, tt.m, got)
		}
	}
	if !p.AllowsChannels("ag", "T0A", []string{"C1", "C1"}, true) || p.AllowsChannels("ag", "T0A", []string{"C1", "C2"}, true) ||
		p.AllowsChannels("ag", "T0A", nil, false) || !p.AllowsChannels("ag", "T0A", nil, true) || !p.AllowsChannels("ag", "T0Z", []string{"C9"}, false) {
		t.Fatal("channel decisions wrong")
	}
}

func TestLoadCallPolicy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"default":{"methods":["auth.test"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCallPolicy(good); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxPolicyFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCallPolicy(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: %v", err)
	}
	if _, err := LoadCallPolicy(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestCallClass checks the rate-limit classes.
func TestCallClass(t *testing.T) {
	t.Parallel()
	for m, want := range map[string]string{
		"chat.postMessage": CallClassPost, "chat.appendStream": CallClassPost, "reactions.add": CallClassPost,
		"files.completeUploadExternal": CallClassPost, "chat.getPermalink": CallClassRead,
		"conversations.history": CallClassRead, "users.info": CallClassRead, "auth.test": CallClassRead,
		"reactions.get": CallClassRead, "views.open": CallClassOther, "files.getUploadURLExternal": CallClassOther,
		"assistant.threads.setStatus": CallClassOther, "conversations.open": CallClassOther,
	} {
		if got := CallClass(m); got != want {
			t.Errorf("CallClass(%s) = %s, want %s", m, got, want)
		}
	}
}

// FuzzParseCallPolicy: any document either parses or fails with an error
// naming the file; a parsed policy answers without panicking.
func FuzzParseCallPolicy(f *testing.F) {
	f.Add([]byte(`{"default":{"methods":["@default"],"channels":["C1"]},"rules":[{"org_id":"T0A","methods":["chat."]}]}`))
	f.Add([]byte(`{"rules":[{"agent_id":"` + testAgentID + `","methods":["auth.test"],"channels":["*"]}]}`))
	f.Add([]byte(`{"rules":[{}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := ParseCallPolicy("fuzz.json", doc)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "call policy fuzz.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		p.AllowsMethod(testAgentID, "T0A", "chat.postMessage")
		p.AllowsChannels(testAgentID, "T0A", []string{"C1"}, true)
	})
}

// FuzzBuildSlackRequest: any decrypted body either is refused with an
// error or becomes a Slack request without a token argument.
func FuzzBuildSlackRequest(f *testing.F) {
	f.Add([]byte(`{"encoding":"form","args":{"channel":"C1","text":"x","token":"t"}}`))
	f.Add([]byte(`{"encoding":"json","args":{"channels":["C1","C2"],"blocks":[{"type":"divider"}],"token":"t"}}`))
	f.Add([]byte(`{"encoding":"json","args":{"channel":1}}`))
	f.Add([]byte(`{"encoding":"form","args":{"channels":"C1,,C2"}}`))
	f.Fuzz(func(t *testing.T, pt []byte) {
		r, err := buildSlackRequest(append([]byte(nil), pt...))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid encrypted_body: ") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if strings.Contains(r.contentType, "json") {
			var m map[string]any
			if err := jsonUnmarshal(r.body, &m); err != nil {
				t.Fatalf("json body does not parse: %v", err)
			}
			if _, ok := m["token"]; ok {
				t.Fatal("token kept")
			}
		} else if strings.Contains("&"+string(r.body), "&token=") {
			t.Fatal("token kept")
		}
	})
}

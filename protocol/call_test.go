package protocol

import (
	"strings"
	"testing"
)

func TestValidateMethod(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method string
		ok     bool
	}{
		{"chat.postMessage", true},
		{"conversations.replies", true},
		{"admin.users.session.reset", true},
		{"assistant.threads.setStatus", true},
		{"", false},
		{"chat", false},
		{"Chat.postMessage", false},
		{"chat.", false},
		{".chat", false},
		{"chat..postMessage", false},
		{"chat.post-message", false},
		{"chat.1post", false},
		{"chat/postMessage", false},
		{"a." + strings.Repeat("b", 63), false},
		{"a." + strings.Repeat("b", 62), true},
	} {
		err := ValidateMethod(tc.method)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateMethod(%q) = %v, want ok=%v", tc.method, err, tc.ok)
		}
	}
}

func TestCallSigningBytes(t *testing.T) {
	t.Parallel()
	got := string(CallSigningBytes("T1", 1771465000, "conversations.replies", "ZW5j", "bm9uY2U="))
	want := `{"action":"api.call","payload":{"encrypted_body":"ZW5j","method":"conversations.replies","nonce":"bm9uY2U="},"protocol_version":"2026-02-1","timestamp":1771465000,"workspace_id":"T1"}`
	if got != want {
		t.Fatalf("CallSigningBytes =\n%s\nwant\n%s", got, want)
	}
	got = string(RespondSigningBytes("T1", 1771465000, "m-1", "ZW5j", "bm9uY2U="))
	want = `{"action":"inbox.respond","payload":{"encrypted_body":"ZW5j","message_id":"m-1","nonce":"bm9uY2U="},"protocol_version":"2026-02-1","timestamp":1771465000,"workspace_id":"T1"}`
	if got != want {
		t.Fatalf("RespondSigningBytes =\n%s\nwant\n%s", got, want)
	}
}

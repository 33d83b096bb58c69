package protocol

import (
	"encoding/json"
	"fmt"
	"regexp"
)

// Extension actions (shared/protocol.md §8), signed like inbox.pull.
const (
	// ActionCall names a POST /api/call signature (§8.1).
	ActionCall = "api.call"
	// ActionRespond names a POST /api/inbox/respond signature (§8.2).
	ActionRespond = "inbox.respond"
)

// Capabilities an agent may declare (§8.2).
const (
	// CapabilityRespond says the agent answers held Slack requests.
	CapabilityRespond = "inbox.respond"
)

// MaxMethodLength bounds the Slack method name of an api.call.
const MaxMethodLength = 64

// Call body encodings (§8.1).
const (
	// EncodingForm sends string args form-encoded to Slack.
	EncodingForm = "form"
	// EncodingJSON sends args as a JSON body to Slack.
	EncodingJSON = "json"
)

// Error codes the broker answers an api.call with, in Slack's vocabulary so
// that SDK clients behind the bridge understand them.
const (
	ErrMethodNotAllowed  = "method_not_allowed"
	ErrChannelNotAllowed = "channel_not_allowed"
	ErrSlackUnavailable  = "slack_unavailable"
)

var methodPattern = regexp.MustCompile(`^[a-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+$`)

// ValidateMethod checks a Slack Web API method name against §8.1:
// ^[a-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+$, at most 64 bytes.
func ValidateMethod(m string) error {
	if m == "" {
		return fmt.Errorf("invalid method: missing")
	}
	if len(m) > MaxMethodLength || !methodPattern.MatchString(m) {
		return fmt.Errorf("invalid method: must look like chat.postMessage and be at most %d bytes", MaxMethodLength)
	}
	return nil
}

// CallRequest is the body of POST /api/call (§8.1).
type CallRequest struct {
	OrgID           string `json:"org_id,omitempty"`
	WorkspaceID     string `json:"workspace_id,omitempty"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	Method          string `json:"method"`
	EncryptedBody   string `json:"encrypted_body"`
	Nonce           string `json:"nonce"`
	Timestamp       int64  `json:"timestamp"`
	Signature       string `json:"signature"`
}

// CallBody is the decrypted body of an api.call. With EncodingForm, Args
// must be an object of strings; with EncodingJSON, any JSON object.
type CallBody struct {
	Encoding string          `json:"encoding"`
	Args     json.RawMessage `json:"args"`
}

// CallResponse answers an allowed POST /api/call. The plaintext of
// EncryptedResponse is the exact JSON body Slack returned; it is sealed
// under ResponseNonce, a fresh nonce the broker generated.
type CallResponse struct {
	OK                bool   `json:"ok"`
	ResponseNonce     string `json:"response_nonce"`
	EncryptedResponse string `json:"encrypted_response"`
}

// CallSigningBytes returns the canonical bytes of an api.call signature:
// stable({workspace_id, protocol_version, action: "api.call", timestamp,
// payload: {method, encrypted_body, nonce}}).
func CallSigningBytes(workspaceID string, ts int64, method, encryptedBody, nonce string) []byte {
	return agentSigningBytes(workspaceID, ActionCall, ts, map[string]any{
		"method":         method,
		"encrypted_body": encryptedBody,
		"nonce":          nonce,
	})
}

// RespondRequest is the body of POST /api/inbox/respond (§8.2).
type RespondRequest struct {
	OrgID           string `json:"org_id,omitempty"`
	WorkspaceID     string `json:"workspace_id,omitempty"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	MessageID       string `json:"message_id"`
	EncryptedBody   string `json:"encrypted_body"`
	Nonce           string `json:"nonce"`
	Timestamp       int64  `json:"timestamp"`
	Signature       string `json:"signature"`
}

// RespondResponse answers POST /api/inbox/respond. Delivered is false when
// the respond came too late, after another agent's, or for a message that
// was not held.
type RespondResponse struct {
	OK        bool `json:"ok"`
	Delivered bool `json:"delivered"`
}

// RespondSigningBytes returns the canonical bytes of an inbox.respond
// signature: stable({workspace_id, protocol_version, action:
// "inbox.respond", timestamp, payload: {message_id, encrypted_body, nonce}}).
func RespondSigningBytes(workspaceID string, ts int64, messageID, encryptedBody, nonce string) []byte {
	return agentSigningBytes(workspaceID, ActionRespond, ts, map[string]any{
		"message_id":     messageID,
		"encrypted_body": encryptedBody,
		"nonce":          nonce,
	})
}

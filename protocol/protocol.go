// Package protocol holds sealrelay's wire types (protocol version 2026-02-1,
// wire-compatible with the Baudbot broker protocol) and the canonical byte
// strings that broker and bridge sign and verify. It knows nothing of HTTP
// servers or storage; both halves share it so that they cannot drift apart.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Version is the protocol version this package implements.
const Version = "2026-02-1"

// Limits from the protocol.
const (
	// MaxBodySize is the largest request body the broker accepts.
	MaxBodySize = 1 << 20
	// MaxIDLength is the longest org/workspace id.
	MaxIDLength = 128
	// TimestampWindow is the allowed clock difference, in seconds, for signed
	// agent requests.
	TimestampWindow = 300
	// SendNonceTTL is how long, in seconds, a send nonce is remembered.
	SendNonceTTL = 600
	// DefaultMaxMessages and MaxMaxMessages bound inbox.pull's max_messages.
	DefaultMaxMessages = 10
	MaxMaxMessages     = 100
	// MaxWaitSeconds bounds inbox.pull's wait_seconds.
	MaxWaitSeconds = 25
	// MinRegistrationTokenLength is the shortest registration token.
	MinRegistrationTokenLength = 32
)

// Actions named in signatures and send requests.
const (
	ActionPull        = "inbox.pull"
	ActionAck         = "inbox.ack"
	ActionUnregister  = "agent.unregister"
	ActionPostMessage = "chat.postMessage"
	ActionUpdate      = "chat.update"
	ActionReact       = "reactions.add"
)

// Access token scopes returned by register.
var DefaultScopes = []string{"inbox.pull", "inbox.ack", "send"}

// Error phrases. Clients match on them; keep them in error messages verbatim.
const (
	ErrMissingRegistrationProof = "missing registration proof"
	ErrInvalidRegistrationToken = "invalid registration token"
	ErrRegistrationTokenUsed    = "registration token already used"
	ErrOrgNotFound              = "org not found"
	ErrAlreadyActive            = "already active"
	ErrInvalidPrefix            = "invalid"
	ErrBodyTooLarge             = "request body too large"
	ErrInvalidJSON              = "invalid JSON body"
	ErrMissingToken             = "missing bearer token"
	ErrInvalidToken             = "invalid or expired access token"
	ErrTokenOrgMismatch         = "access token does not belong to this org"
	ErrUnsupportedVersion       = "unsupported protocol_version"
	ErrTimestampWindow          = "timestamp outside the allowed window"
	ErrInvalidSignature         = "invalid signature"
	ErrReplay                   = "replay detected"
	ErrRateLimited              = "rate_limited"
	ErrUnknownAction            = "unsupported action"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// ErrInvalidID is returned by ValidateID.
var ErrInvalidID = errors.New("invalid org_id")

// ValidateID checks an org/workspace id: ^[A-Za-z0-9][A-Za-z0-9._:-]*$, at
// most 128 bytes.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: missing org_id/workspace_id", ErrInvalidID)
	}
	if len(id) > MaxIDLength || !idPattern.MatchString(id) {
		return fmt.Errorf("%w: must match [A-Za-z0-9][A-Za-z0-9._:-]* and be at most %d bytes", ErrInvalidID, MaxIDLength)
	}
	return nil
}

// ResolveOrgID returns the routing id from a request carrying org_id and/or
// workspace_id: both must be equal when both are present, and the result
// must be a valid id.
func ResolveOrgID(orgID, workspaceID string) (string, error) {
	id := orgID
	switch {
	case orgID == "":
		id = workspaceID
	case workspaceID != "" && orgID != workspaceID:
		return "", fmt.Errorf("%w: org_id and workspace_id differ", ErrInvalidID)
	}
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return id, nil
}

// ErrorResponse is the body of every failed response.
type ErrorResponse struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// BrokerPubkeyResponse answers GET /api/broker-pubkey.
type BrokerPubkeyResponse struct {
	OK                  bool   `json:"ok"`
	BrokerPubkey        string `json:"broker_pubkey"`
	BrokerSigningPubkey string `json:"broker_signing_pubkey"`
}

// RegisterRequest is the body of POST /api/register. AuthCode is the older
// name of RegistrationToken.
type RegisterRequest struct {
	OrgID               string `json:"org_id,omitempty"`
	WorkspaceID         string `json:"workspace_id,omitempty"`
	ServerPubkey        string `json:"server_pubkey"`
	ServerSigningPubkey string `json:"server_signing_pubkey"`
	RegistrationToken   string `json:"registration_token,omitempty"`
	AuthCode            string `json:"auth_code,omitempty"`
}

// Token returns the registration proof under either name.
func (r *RegisterRequest) Token() string {
	if r.RegistrationToken != "" {
		return r.RegistrationToken
	}
	return r.AuthCode
}

// RegisterResponse answers a successful POST /api/register.
type RegisterResponse struct {
	OK                         bool     `json:"ok"`
	BrokerPubkey               string   `json:"broker_pubkey"`
	BrokerSigningPubkey        string   `json:"broker_signing_pubkey"`
	BrokerAccessToken          string   `json:"broker_access_token"`
	BrokerAccessTokenExpiresAt string   `json:"broker_access_token_expires_at"`
	BrokerAccessTokenScopes    []string `json:"broker_access_token_scopes"`
}

// UnregisterRequest is the body of DELETE /api/register.
type UnregisterRequest struct {
	OrgID       string `json:"org_id,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	Timestamp   int64  `json:"timestamp"`
	Signature   string `json:"signature"`
}

// PullRequest is the body of POST /api/inbox/pull. MaxMessages and
// WaitSeconds are pointers so that absent values take their defaults.
type PullRequest struct {
	OrgID           string          `json:"org_id,omitempty"`
	WorkspaceID     string          `json:"workspace_id,omitempty"`
	ProtocolVersion string          `json:"protocol_version,omitempty"`
	MaxMessages     *int            `json:"max_messages,omitempty"`
	WaitSeconds     *int            `json:"wait_seconds,omitempty"`
	Timestamp       int64           `json:"timestamp"`
	Signature       string          `json:"signature"`
	Meta            json.RawMessage `json:"meta,omitempty"`
}

// Limits returns max_messages and wait_seconds with defaults applied, or an
// error naming the field that is out of range.
func (r *PullRequest) Limits() (maxMessages, waitSeconds int, err error) {
	maxMessages, waitSeconds = DefaultMaxMessages, 0
	if r.MaxMessages != nil {
		maxMessages = *r.MaxMessages
	}
	if r.WaitSeconds != nil {
		waitSeconds = *r.WaitSeconds
	}
	if maxMessages < 1 || maxMessages > MaxMaxMessages {
		return 0, 0, fmt.Errorf("invalid max_messages: must be 1-%d", MaxMaxMessages)
	}
	if waitSeconds < 0 || waitSeconds > MaxWaitSeconds {
		return 0, 0, fmt.Errorf("invalid wait_seconds: must be 0-%d", MaxWaitSeconds)
	}
	return maxMessages, waitSeconds, nil
}

// InboxMessage is one message in a pull response.
type InboxMessage struct {
	MessageID       string `json:"message_id"`
	OrgID           string `json:"org_id"`
	WorkspaceID     string `json:"workspace_id"`
	Encrypted       string `json:"encrypted"`
	BrokerTimestamp int64  `json:"broker_timestamp"`
	BrokerSignature string `json:"broker_signature"`
}

// PullResponse answers POST /api/inbox/pull.
type PullResponse struct {
	OK       bool           `json:"ok"`
	Messages []InboxMessage `json:"messages"`
}

// AckRequest is the body of POST /api/inbox/ack.
type AckRequest struct {
	OrgID           string   `json:"org_id,omitempty"`
	WorkspaceID     string   `json:"workspace_id,omitempty"`
	ProtocolVersion string   `json:"protocol_version,omitempty"`
	MessageIDs      []string `json:"message_ids"`
	Timestamp       int64    `json:"timestamp"`
	Signature       string   `json:"signature"`
}

// AckResponse answers POST /api/inbox/ack.
type AckResponse struct {
	OK    bool `json:"ok"`
	Acked int  `json:"acked"`
}

// Routing says where a send goes. Absent fields are empty strings in the
// signature.
type Routing struct {
	Channel   string `json:"channel,omitempty"`
	ThreadTS  string `json:"thread_ts,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
	Emoji     string `json:"emoji,omitempty"`
}

// SendRequest is the body of POST /api/send.
type SendRequest struct {
	OrgID         string  `json:"org_id,omitempty"`
	WorkspaceID   string  `json:"workspace_id,omitempty"`
	Action        string  `json:"action"`
	Routing       Routing `json:"routing"`
	EncryptedBody string  `json:"encrypted_body"`
	Nonce         string  `json:"nonce"`
	Timestamp     int64   `json:"timestamp"`
	Signature     string  `json:"signature"`
}

// SendBody is the decrypted body of a send.
type SendBody struct {
	Text   string          `json:"text,omitempty"`
	Blocks json.RawMessage `json:"blocks,omitempty"`
	Emoji  string          `json:"emoji,omitempty"`
}

// SendResponse answers POST /api/send.
type SendResponse struct {
	OK      bool   `json:"ok"`
	TS      string `json:"ts,omitempty"`
	Channel string `json:"channel,omitempty"`
	Error   string `json:"error,omitempty"`
}

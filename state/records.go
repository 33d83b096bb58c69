package state

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// Errors returned by Store implementations. Callers test them with errors.Is.
var (
	// ErrNotFound means the record does not exist (or has expired and been
	// forgotten).
	ErrNotFound = errors.New("broker state: not found")
	// ErrExpired means the record exists but its lifetime has ended.
	ErrExpired = errors.New("broker state: expired")
	// ErrUsed means a single-use record was consumed before.
	ErrUsed = errors.New("broker state: already used")
	// ErrAgentExists means an agent with the same signing key is already
	// registered.
	ErrAgentExists = errors.New("broker state: agent signing key already registered")
	// ErrOrgFull means the org already has its maximum number of agents
	// (see Agents.RegisterAgent); the registration token is not consumed.
	ErrOrgFull = errors.New("broker state: org already has its maximum number of agents")
	// ErrConflict means a concurrent writer changed the record; retry.
	ErrConflict = errors.New("broker state: concurrent modification")
)

// Default lifetimes of persisted records.
const (
	DefaultAccessTokenTTL       = 90 * 24 * time.Hour
	DefaultRegistrationTokenTTL = time.Hour
	DefaultOAuthStateTTL        = 10 * time.Minute
	// DefaultEventDedupTTL is how long a Slack event_id is remembered. Slack
	// retries for up to about 5 minutes after the first attempt.
	DefaultEventDedupTTL = time.Hour
	// EventPendingTTL bounds how long an event_id stays "in progress" when
	// the replica that claimed it dies before finishing.
	EventPendingTTL = 30 * time.Second
	// UsedRegistrationTokenRetention is how long a consumed registration
	// token is remembered after its expiry, so that reuse answers "already
	// used" rather than "invalid".
	UsedRegistrationTokenRetention = 24 * time.Hour
	// DropRecordTTL is how long drop records of an agent that never pulls
	// are kept (every RecordDrop extends it).
	DropRecordTTL = 30 * 24 * time.Hour
)

// TokenHash is the keyed hash of a secret token (access token, registration
// token, OAuth state, one-time signature), computed by the broker; only
// hashes are stored, never the tokens. Its text form (String,
// MarshalText) is lower-case hex, the form used in store keys and records.
type TokenHash [32]byte

// String returns the hash in lower-case hex.
func (h TokenHash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler (lower-case hex).
func (h TokenHash) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(h)))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler: 64 hex digits.
func (h *TokenHash) UnmarshalText(b []byte) error {
	if len(b) != hex.EncodedLen(len(h)) {
		return fmt.Errorf("token hash: want %d hex digits, got %d characters", hex.EncodedLen(len(h)), len(b))
	}
	var v TokenHash
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("token hash: %w", err)
	}
	*h = v
	return nil
}

// UnmarshalJSON accepts the hex string MarshalText writes and, for records
// written before it existed (the bbolt state), a JSON array of 32 numbers.
func (h *TokenHash) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		var v [32]byte
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("token hash: %w", err)
		}
		*h = v
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("token hash: %w", err)
	}
	return h.UnmarshalText([]byte(s))
}

// Installation is one Slack app installation, stored like Bolt's
// installation stores do. OrgID is the routing id: the enterprise id for an
// org-wide (enterprise) install, the team id otherwise.
//
// BotToken and BotRefreshToken hold crypto.Keyring stored forms (owner =
// OrgID), never plaintext.
type Installation struct {
	OrgID               string    `json:"org_id"`
	TeamID              string    `json:"team_id,omitempty"`
	TeamName            string    `json:"team_name,omitempty"`
	EnterpriseID        string    `json:"enterprise_id,omitempty"`
	EnterpriseName      string    `json:"enterprise_name,omitempty"`
	IsEnterpriseInstall bool      `json:"is_enterprise_install,omitempty"`
	AppID               string    `json:"app_id,omitempty"`
	BotUserID           string    `json:"bot_user_id,omitempty"`
	BotID               string    `json:"bot_id,omitempty"`
	BotScopes           []string  `json:"bot_scopes,omitempty"`
	InstallerUserID     string    `json:"installer_user_id,omitempty"`
	TokenType           string    `json:"token_type,omitempty"`
	BotToken            string    `json:"bot_token,omitempty"`
	BotRefreshToken     string    `json:"bot_refresh_token,omitempty"`
	BotTokenExpiresAt   time.Time `json:"bot_token_expires_at,omitzero"`
	InstalledAt         time.Time `json:"installed_at"`
	UpdatedAt           time.Time `json:"updated_at"`
	Revoked             bool      `json:"revoked,omitempty"`
	RevokedAt           time.Time `json:"revoked_at,omitzero"`
	// RefreshLease is the random id of the bot token refresh in progress
	// (one replica at a time exchanges the refresh token) and
	// RefreshLeaseUntil when that lease lapses. Empty when none runs.
	RefreshLease      string    `json:"refresh_lease,omitempty"`
	RefreshLeaseUntil time.Time `json:"refresh_lease_until,omitzero"`
}

// Revoke deletes the installation's tokens (and any refresh lease) and marks
// it revoked at the given time.
func (inst *Installation) Revoke(at time.Time) {
	inst.BotToken, inst.BotRefreshToken = "", ""
	inst.BotTokenExpiresAt = time.Time{}
	inst.RefreshLease, inst.RefreshLeaseUntil = "", time.Time{}
	inst.Revoked = true
	inst.RevokedAt = at.UTC()
	inst.UpdatedAt = at.UTC()
}

// Agent is one registered bridge. Several agents may serve one org.
//
// Its stored form (MarshalJSON) writes the keys in their text form
// (base64, as crypto prints them) and the token hash in hex.
type Agent struct {
	ID               string
	OrgID            string
	BoxPublicKey     crypto.BoxPublicKey
	SigningPublicKey crypto.SigningPublicKey
	CreatedAt        time.Time
	// AccessTokenHash is the keyed hash of the agent's current access token.
	AccessTokenHash TokenHash
	// AccessTokenExpiresAt is when that token stops working.
	AccessTokenExpiresAt time.Time
	// RespondUntil is when the agent's last inbox.respond declaration
	// stops counting (protocol §8.2); zero when it never declared it.
	RespondUntil time.Time
}

// agentRecord is the stored form of an Agent.
type agentRecord struct {
	ID                   string          `json:"id"`
	OrgID                string          `json:"org_id"`
	BoxPublicKey         json.RawMessage `json:"box_public_key"`
	SigningPublicKey     json.RawMessage `json:"signing_public_key"`
	CreatedAt            time.Time       `json:"created_at"`
	AccessTokenHash      TokenHash       `json:"access_token_hash"`
	AccessTokenExpiresAt time.Time       `json:"access_token_expires_at"`
	RespondUntil         time.Time       `json:"respond_until,omitzero"`
}

// MarshalJSON implements json.Marshaler: the one stored form of an agent.
func (a Agent) MarshalJSON() ([]byte, error) {
	box, _ := json.Marshal(a.BoxPublicKey.String())
	sig, _ := json.Marshal(a.SigningPublicKey.String())
	return json.Marshal(agentRecord{
		ID: a.ID, OrgID: a.OrgID, BoxPublicKey: box, SigningPublicKey: sig,
		CreatedAt: a.CreatedAt.UTC(), AccessTokenHash: a.AccessTokenHash,
		AccessTokenExpiresAt: a.AccessTokenExpiresAt.UTC(), RespondUntil: a.RespondUntil.UTC(),
	})
}

// UnmarshalJSON implements json.Unmarshaler. Besides the form MarshalJSON
// writes it reads the older bbolt form, whose keys and hash were JSON
// arrays of 32 numbers.
func (a *Agent) UnmarshalJSON(b []byte) error {
	var r agentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("decode agent: %w", err)
	}
	box, err := parseKey(r.BoxPublicKey, crypto.ParseBoxPublicKey)
	if err != nil {
		return fmt.Errorf("decode agent %s: box public key: %w", r.ID, err)
	}
	sig, err := parseKey(r.SigningPublicKey, crypto.ParseSigningPublicKey)
	if err != nil {
		return fmt.Errorf("decode agent %s: signing public key: %w", r.ID, err)
	}
	*a = Agent{ID: r.ID, OrgID: r.OrgID, BoxPublicKey: box, SigningPublicKey: sig,
		CreatedAt: r.CreatedAt, AccessTokenHash: r.AccessTokenHash,
		AccessTokenExpiresAt: r.AccessTokenExpiresAt, RespondUntil: r.RespondUntil}
	return nil
}

// parseKey decodes a stored 32-byte public key: its text form, or the
// JSON array of numbers older bbolt records hold.
func parseKey[K ~[32]byte](raw json.RawMessage, parse func(string) (K, error)) (K, error) {
	var k K
	if len(raw) > 0 && raw[0] == '[' {
		var v [32]byte
		if err := json.Unmarshal(raw, &v); err != nil {
			return k, err
		}
		return K(v), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return k, err
	}
	return parse(s)
}

// AccessGrant is what an access token resolves to.
type AccessGrant struct {
	AgentID   string
	OrgID     string
	ExpiresAt time.Time
}

// EventClaim is the outcome of Events.ClaimEvent.
type EventClaim int

// EventClaim values.
const (
	// EventClaimed: this caller owns the event and must Complete or Release it.
	EventClaimed EventClaim = iota + 1
	// EventInProgress: another request (maybe on another replica) is
	// storing it right now; answer 5xx so Slack retries later.
	EventInProgress
	// EventDone: the event was stored before; answer 200 and do nothing.
	EventDone
)

// RateLimit describes a token bucket: Rate tokens per second, at most Burst.
type RateLimit struct {
	Rate  float64
	Burst int
}

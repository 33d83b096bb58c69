package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// Errors returned by State implementations. Callers test them with errors.Is.
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
)

// TokenHash is the keyed hash of a secret token (access token, registration
// token, OAuth state): HMAC-SHA256 under the broker's hash key (see
// HashKey.Hash). Only hashes are stored, never the tokens.
type TokenHash [32]byte

// String returns the hash in lower-case hex, the form used in store keys.
func (h TokenHash) String() string { return hex.EncodeToString(h[:]) }

// HashKey is the key of the keyed hashes under which tokens are stored. It is
// derived from the broker's Ed25519 signing seed:
//
//	hash key = HMAC-SHA256(key = seed, msg = "sealrelay/broker/token-hash-key/v1")
//	TokenHash(kind, token) = HMAC-SHA256(key = hash key, msg = kind ‖ 0x00 ‖ token)
//
// so every replica sharing the broker keys computes the same hashes, and a
// dump of the store alone does not let anyone test token guesses offline.
// Rotating the signing key invalidates every stored token hash (agents must
// re-register), which is the intended effect of replacing that key.
type HashKey struct{ k []byte }

// DeriveHashKey derives the token hash key from the broker's signing key.
func DeriveHashKey(sk *crypto.SigningKey) (*HashKey, error) {
	seed, err := decodeStd(sk.SeedString())
	if err != nil {
		return nil, err
	}
	defer crypto.Wipe(seed)
	return &HashKey{k: crypto.HMACSHA256(seed, []byte("sealrelay/broker/token-hash-key/v1"))}, nil
}

// Token hash kinds, so that a token of one kind never matches another.
const (
	KindAccessToken       = "access-token"
	KindRegistrationToken = "registration-token"
	KindOAuthState        = "oauth-state"
	KindUnregisterSig     = "unregister-signature"
)

// Hash returns the keyed hash of token for the given kind.
func (k *HashKey) Hash(kind, token string) TokenHash {
	msg := make([]byte, 0, len(kind)+1+len(token))
	msg = append(msg, kind...)
	msg = append(msg, 0)
	msg = append(msg, token...)
	var h TokenHash
	copy(h[:], crypto.HMACSHA256(k.k, msg))
	crypto.Wipe(msg)
	return h
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
}

// Agent is one registered bridge. Several agents may serve one org.
type Agent struct {
	ID               string                  `json:"id"`
	OrgID            string                  `json:"org_id"`
	BoxPublicKey     crypto.BoxPublicKey     `json:"box_public_key"`
	SigningPublicKey crypto.SigningPublicKey `json:"signing_public_key"`
	CreatedAt        time.Time               `json:"created_at"`
	// AccessTokenHash is the keyed hash of the agent's current access token.
	AccessTokenHash TokenHash `json:"access_token_hash"`
	// AccessTokenExpiresAt is when that token stops working.
	AccessTokenExpiresAt time.Time `json:"access_token_expires_at"`
	// RespondUntil is when the agent's last inbox.respond declaration
	// stops counting (protocol §8.2); zero when it never declared it.
	RespondUntil time.Time `json:"respond_until,omitzero"`
}

// AccessGrant is what an access token resolves to.
type AccessGrant struct {
	AgentID   string
	OrgID     string
	ExpiresAt time.Time
}

// EventClaim is the outcome of State.ClaimEvent.
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

// State is everything the broker persists besides inboxes. All methods are
// safe for concurrent use, and every method that guards against races (token
// consumption, dedup, nonces, agent uniqueness) is atomic across all replicas
// sharing the store. Implementations: RedisState (any number of replicas) and
// the embedded bbolt state (single process). Both must pass the conformance
// suite in state_test.go (testState).
type State interface {
	// PutInstallation creates or replaces the installation inst.OrgID.
	// Re-installing replaces the record (and clears Revoked) but leaves the
	// org's agents alone.
	PutInstallation(ctx context.Context, inst *Installation) error
	// GetInstallation returns the installation, or ErrNotFound.
	GetInstallation(ctx context.Context, orgID string) (*Installation, error)
	// RevokeInstallation deletes the stored bot and refresh tokens and marks
	// the installation revoked at the given time. ErrNotFound if absent.
	RevokeInstallation(ctx context.Context, orgID string, at time.Time) error
	// RewrapSecrets calls fn (e.g. crypto.Keyring.Rewrap) for every stored
	// secret (bot and refresh tokens,
	// owner = org id) and stores the result when fn reports a change. It
	// returns how many secrets were changed. Used by `keys rotate`.
	RewrapSecrets(ctx context.Context, fn func(stored, owner string) (string, bool, error)) (int, error)

	// PutRegistrationToken stores a registration token hash for orgID.
	PutRegistrationToken(ctx context.Context, h TokenHash, orgID string, expiresAt time.Time) error
	// RegisterAgent atomically consumes the registration token h (which must
	// belong to a.OrgID) and creates agent a with its access token
	// a.AccessTokenHash. Errors, checked in this order: ErrNotFound (token
	// unknown or for another org), ErrUsed, ErrExpired, ErrAgentExists (a's
	// signing key is already registered; the token is then NOT consumed).
	RegisterAgent(ctx context.Context, h TokenHash, a *Agent, now time.Time) error
	// GetAgent returns an agent, or ErrNotFound.
	GetAgent(ctx context.Context, id string) (*Agent, error)
	// ListAgents returns the agents of orgID ordered by id (empty when none).
	ListAgents(ctx context.Context, orgID string) ([]*Agent, error)
	// DeleteAgent removes the agent, its access token and its signing key
	// index. Deleting an absent agent returns ErrNotFound.
	DeleteAgent(ctx context.Context, id string) error
	// LookupAccessToken resolves an access token hash: ErrNotFound when
	// unknown, ErrExpired when past its expiry.
	LookupAccessToken(ctx context.Context, h TokenHash, now time.Time) (AccessGrant, error)

	// PutOAuthState stores a one-time OAuth state hash for ttl.
	PutOAuthState(ctx context.Context, h TokenHash, ttl time.Duration) error
	// ConsumeOAuthState deletes the state and reports whether it existed
	// and had not expired.
	ConsumeOAuthState(ctx context.Context, h TokenHash) (bool, error)

	// ClaimEvent claims a Slack event_id for processing (see EventClaim).
	// A claim lapses after EventPendingTTL unless completed.
	ClaimEvent(ctx context.Context, eventID string) (EventClaim, error)
	// CompleteEvent records the claimed event as stored for ttl.
	CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error
	// ReleaseEvent drops a claim so that Slack's retry is processed again.
	ReleaseEvent(ctx context.Context, eventID string) error

	// UseNonce records a send nonce of agentID for ttl and reports whether
	// it was new (false = replay).
	UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error)
	// UseSignature records the hash of an accepted one-time signature (e.g.
	// unregister) for ttl and reports whether it was new.
	UseSignature(ctx context.Context, h TokenHash, ttl time.Duration) (bool, error)

	// Allow takes one token from the bucket named key and reports whether it
	// was available; when not, retryAfter says when the next one will be.
	Allow(ctx context.Context, key string, limit RateLimit, now time.Time) (ok bool, retryAfter time.Duration, err error)

	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

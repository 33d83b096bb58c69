package broker

import (
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"net/url"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
)

// Defaults for Config fields left zero.
const (
	DefaultSlackAPIURL       = "https://slack.com/api/"
	DefaultSlackAuthorizeURL = "https://slack.com/oauth/v2/authorize"
	DefaultSendRate          = 1.0
	DefaultSendBurst         = 20
	DefaultMaxLongPolls      = 4
	DefaultSlackTimeout      = 10 * time.Second
	// DefaultSyncResponseTimeout is the default of Config.SyncResponseTimeout.
	DefaultSyncResponseTimeout = 2500 * time.Millisecond
	// MaxSyncResponseTimeout bounds Config.SyncResponseTimeout: Slack gives
	// up on its request after 3 s.
	MaxSyncResponseTimeout = 2900 * time.Millisecond
	// DefaultRespondCapabilityTTL is the default of Config.RespondCapabilityTTL.
	DefaultRespondCapabilityTTL = 10 * time.Minute
	// DefaultTokenRefreshMargin is how long before its expiry a rotating bot
	// token is refreshed (Slack's SDKs use 2 hours too).
	DefaultTokenRefreshMargin = 2 * time.Hour
	// DefaultCallMaxResponse caps a Slack answer relayed by /api/call.
	DefaultCallMaxResponse = 2 << 20
	// LongPollMax is the longest a pull waits (protocol: wait_seconds ≤ 25).
	LongPollMax = 25 * time.Second
)

// DefaultBotScopes are the bot scopes requested at install when
// Config.BotScopes is empty.
var DefaultBotScopes = []string{
	"app_mentions:read", "channels:history", "groups:history", "im:history",
	"mpim:history", "chat:write", "reactions:write", "commands",
}

// Config configures a Server. Secrets (client secret, signing secret) come
// from the caller; the Server never logs them.
type Config struct {
	// PublicURL is the broker's externally reachable base URL, e.g.
	// "https://broker.example.com". The OAuth redirect URI is
	// PublicURL + "/slack/oauth/callback"; the install page shows it in the
	// `bridge register --broker-url` command. Required.
	PublicURL string
	// SlackClientID and SlackClientSecret are the Slack app's OAuth
	// credentials. Required.
	SlackClientID     string
	SlackClientSecret string
	// SlackSigningSecret verifies Slack's webhooks. Required.
	SlackSigningSecret string
	// SlackAPIURL is the Web API base URL with a trailing slash (default
	// https://slack.com/api/); tests point it at internal/slackfake.
	SlackAPIURL string
	// SlackAuthorizeURL is Slack's OAuth v2 authorize page (default
	// https://slack.com/oauth/v2/authorize).
	SlackAuthorizeURL string
	// BotScopes and UserScopes are requested at install (BotScopes default
	// DefaultBotScopes).
	BotScopes  []string
	UserScopes []string
	// AccessTokenTTL is the lifetime of agent access tokens (default 90 days).
	AccessTokenTTL time.Duration
	// AccessTokenOverlap is how long the previous access token keeps
	// working after an agent.renew (default DefaultAccessTokenOverlap).
	AccessTokenOverlap time.Duration
	// AgentsPerOrg caps the agents one org may have registered at once; a
	// registration beyond it is answered 409 "workspace already active"
	// (as the Baudbot broker does with 1). 0 = unlimited.
	AgentsPerOrg int
	// AgentIdleAfter is how long without a pull makes an agent idle (default
	// DefaultAgentIdleAfter; counted from registration when it never pulled).
	AgentIdleAfter time.Duration
	// PauseIdleFanout skips idle agents in fan-out; each skipped copy is
	// counted and recorded as drop reason agent_idle (broker/idle.go).
	PauseIdleFanout bool
	// RegistrationTokenTTL is the lifetime of registration tokens (default 1 h).
	RegistrationTokenTTL time.Duration
	// OAuthStateTTL is how long an install's state stays valid (default 10 min).
	OAuthStateTTL time.Duration
	// EventDedupTTL is how long a Slack event_id is remembered (default 1 h).
	EventDedupTTL time.Duration
	// SendRate is the per-agent token bucket for /api/send (default 1/s,
	// burst 20). A negative Rate disables the limit.
	SendRate RateLimit
	// MaxLongPollsPerAgent caps concurrent waiting pulls per agent (default 4).
	MaxLongPollsPerAgent int
	// SlackTimeout bounds each Slack API call (default 10 s).
	SlackTimeout time.Duration
	// TokenRefreshMargin is how long before its expiry a rotating bot token
	// is refreshed (default DefaultTokenRefreshMargin, 2 h).
	TokenRefreshMargin time.Duration
	// CallPolicy says which methods and channels each agent may use through
	// /api/call; nil is the built-in default (DefaultCallMethods, any
	// channel).
	CallPolicy *CallPolicy
	// CallPostRate, CallReadRate and CallOtherRate are the per-agent token
	// buckets of /api/call by method class (see CallClass; defaults
	// DefaultCallPostRate, DefaultCallReadRate, DefaultCallOtherRate). A
	// negative Rate disables that limit.
	CallPostRate, CallReadRate, CallOtherRate RateLimit
	// CallMaxResponse caps the Slack response body /api/call relays
	// (default DefaultCallMaxResponse); a larger answer is refused, never
	// truncated.
	CallMaxResponse int64
	// WebhookTimeout bounds the store work of one Slack webhook (default
	// DefaultWebhookTimeout): when the state or inbox store has not
	// answered by then the webhook gets a 503, well inside Slack's 3 s.
	WebhookTimeout time.Duration
	// SyncResponseTimeout is how long a Slack request that an agent may
	// answer (protocol §8.2) is held for its inbox.respond, counted from
	// its arrival (default DefaultSyncResponseTimeout; Slack waits 3 s).
	SyncResponseTimeout time.Duration
	// RespondCapabilityTTL is how long an agent's inbox.respond
	// declaration (in a pull's meta or at registration) makes the broker
	// hold its org's requests (default DefaultRespondCapabilityTTL).
	RespondCapabilityTTL time.Duration
	// Audit records every bot-token use and trust change (see
	// broker/audit.go and package audit); nil turns auditing off.
	Audit audit.Recorder
	// AuditRequired refuses (503 audit_unavailable) an api.call or send
	// whose audit record cannot be written, before Slack is called.
	AuditRequired bool
	// CompactStored stores inbox copies in the binary stored form
	// (protocol.AppendStored) instead of the JSON every version reads
	// (protocol.AppendStoredJSON). Brokers before it cannot read that
	// form and drop such a copy as malformed, so set it only when no older
	// broker shares the store: cmd/broker sets it for the embedded store
	// (one process) and not for Redis, until a later release.
	CompactStored bool
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// withDefaults returns c with zero fields defaulted.
func (c Config) withDefaults() Config {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.SlackAPIURL == "" {
		c.SlackAPIURL = DefaultSlackAPIURL
	}
	if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/"
	}
	if c.SlackAuthorizeURL == "" {
		c.SlackAuthorizeURL = DefaultSlackAuthorizeURL
	}
	if len(c.BotScopes) == 0 {
		c.BotScopes = DefaultBotScopes
	}
	if c.AccessTokenTTL <= 0 {
		c.AccessTokenTTL = state.DefaultAccessTokenTTL
	}
	if c.RegistrationTokenTTL <= 0 {
		c.RegistrationTokenTTL = state.DefaultRegistrationTokenTTL
	}
	if c.AccessTokenOverlap <= 0 {
		c.AccessTokenOverlap = DefaultAccessTokenOverlap
	}
	if c.AgentIdleAfter <= 0 {
		c.AgentIdleAfter = DefaultAgentIdleAfter
	}
	if c.OAuthStateTTL <= 0 {
		c.OAuthStateTTL = state.DefaultOAuthStateTTL
	}
	if c.EventDedupTTL <= 0 {
		c.EventDedupTTL = state.DefaultEventDedupTTL
	}
	if c.SendRate.Rate == 0 {
		c.SendRate.Rate = DefaultSendRate
	}
	if c.SendRate.Burst <= 0 {
		c.SendRate.Burst = DefaultSendBurst
	}
	if c.MaxLongPollsPerAgent <= 0 {
		c.MaxLongPollsPerAgent = DefaultMaxLongPolls
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
	if c.SlackTimeout <= 0 {
		c.SlackTimeout = DefaultSlackTimeout
	}
	if c.TokenRefreshMargin <= 0 {
		c.TokenRefreshMargin = DefaultTokenRefreshMargin
	}
	c.CallPostRate = orDefault(c.CallPostRate, DefaultCallPostRate)
	c.CallReadRate = orDefault(c.CallReadRate, DefaultCallReadRate)
	c.CallOtherRate = orDefault(c.CallOtherRate, DefaultCallOtherRate)
	if c.CallMaxResponse <= 0 {
		c.CallMaxResponse = DefaultCallMaxResponse
	}
	if c.SyncResponseTimeout <= 0 {
		c.SyncResponseTimeout = DefaultSyncResponseTimeout
	}
	if c.RespondCapabilityTTL <= 0 {
		c.RespondCapabilityTTL = DefaultRespondCapabilityTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first missing or malformed setting, naming it.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.PublicURL == "" {
		return errors.New("broker config: PublicURL is required (the broker's external https URL)")
	}
	for name, v := range map[string]string{"PublicURL": c.PublicURL, "SlackAPIURL": c.SlackAPIURL, "SlackAuthorizeURL": c.SlackAuthorizeURL} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("broker config: %s %q is not an absolute http(s) URL", name, v)
		}
	}
	switch {
	case c.SlackClientID == "":
		return errors.New("broker config: SlackClientID is required (Slack app > Basic Information > Client ID)")
	case c.SlackClientSecret == "":
		return errors.New("broker config: SlackClientSecret is required (Slack app > Basic Information > Client Secret)")
	case c.SlackSigningSecret == "":
		return errors.New("broker config: SlackSigningSecret is required (Slack app > Basic Information > Signing Secret)")
	case c.AuditRequired && c.Audit == nil:
		return errors.New("broker config: AuditRequired is set but Audit is nil (auditing is off)")
	case c.SyncResponseTimeout > MaxSyncResponseTimeout:
		return fmt.Errorf("broker config: SyncResponseTimeout %v is over %v (Slack gives up after 3 s)", c.SyncResponseTimeout, MaxSyncResponseTimeout)
	}
	return nil
}

// Keys are the broker's key material.
type Keys struct {
	// Box is the broker's X25519 key pair (agents seal sends to it).
	Box *crypto.BoxKeyPair
	// Signing is the broker's Ed25519 key (signs inbox messages; the token
	// hash key is derived from it unless HashKey is set).
	Signing *crypto.SigningKey
	// Keyring encrypts bot and refresh tokens at rest.
	Keyring *crypto.Keyring
	// HashKey is the key of stored token hashes; nil derives it from
	// Signing with DeriveHashKey.
	HashKey *HashKey
}

func (k Keys) validate() error {
	switch {
	case k.Box == nil:
		return errors.New("broker keys: box key pair missing (run `broker init`)")
	case k.Signing == nil:
		return errors.New("broker keys: signing key missing (run `broker init`)")
	case k.Keyring == nil:
		return errors.New("broker keys: master keyring missing (run `broker init`)")
	}
	return nil
}

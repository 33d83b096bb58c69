package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// Identity is what `bridge register` produces: where the broker is, which
// installation this agent serves, the agent's keys, the broker's keys and the
// access token.
type Identity struct {
	// BrokerURLs are the base URLs of the broker's replicas, tried in order.
	BrokerURLs []string
	// OrgID is the installation's routing id (org_id == workspace_id).
	OrgID string
	// BoxKey is the agent's X25519 key pair; inbound sealed boxes open with it.
	BoxKey *crypto.BoxKeyPair
	// SigningKey is the agent's Ed25519 key; every agent request is signed with it.
	SigningKey *crypto.SigningKey
	// BrokerBoxKey is the broker's X25519 public key (outbound crypto_box).
	BrokerBoxKey crypto.BoxPublicKey
	// BrokerSigningKey verifies the broker's envelope signatures.
	BrokerSigningKey crypto.SigningPublicKey
	// AccessToken is the bearer token of agent requests. Treat it as a secret.
	AccessToken string
	// AccessTokenExpiresAt is when the token stops working (zero if unknown).
	AccessTokenExpiresAt time.Time
	// AccessTokenIssuedAt is when the broker issued the token (zero when
	// the file does not say; see renewDue).
	AccessTokenIssuedAt time.Time
	// PreviousBoxKey is the box key `bridge rotate-keys` replaced, still
	// tried for messages sealed before the rotation; nil when none.
	PreviousBoxKey *crypto.BoxKeyPair
	// PreviousBoxKeyRetiredAt is when PreviousBoxKey was replaced.
	PreviousBoxKeyRetiredAt time.Time
	// ConfigPath is the file the identity was read from; `bridge run`
	// rewrites it after renewing the token or dropping PreviousBoxKey.
	// Empty: nothing is written.
	ConfigPath string
	// TokenFromEnv is set when the access token came from the process
	// environment, which a rewritten file does not change.
	TokenFromEnv bool
}

// String describes the identity without its secrets, so that printing a
// Config or Identity by accident leaks no key or token.
func (id Identity) String() string {
	return fmt.Sprintf("bridge.Identity{org %s, brokers %s, agent box key %s, agent signing key %s, token redacted}",
		id.OrgID, strings.Join(id.BrokerURLs, ","), publicOrNone(id.BoxKey), signingOrNone(id.SigningKey))
}

// LogValue makes slog print the redacted form.
func (id Identity) LogValue() slog.Value { return slog.StringValue(id.String()) }

// GoString is the redacted form for %#v too.
func (id Identity) GoString() string { return id.String() }

func publicOrNone(k *crypto.BoxKeyPair) string {
	if k == nil {
		return "none"
	}
	return k.Public.String()
}

func signingOrNone(k *crypto.SigningKey) string {
	if k == nil {
		return "none"
	}
	return k.Public().String()
}

// DefaultConfigPath returns $XDG_CONFIG_HOME/sealrelay/bridge.env (or
// ~/.config/sealrelay/bridge.env).
func DefaultConfigPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".config")
		} else {
			dir = "."
		}
	}
	return filepath.Join(dir, "sealrelay", "bridge.env")
}

// DefaultStateDir returns $XDG_STATE_HOME/sealrelay (or
// ~/.local/state/sealrelay).
func DefaultStateDir() string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".local", "state")
		} else {
			dir = "."
		}
	}
	return filepath.Join(dir, "sealrelay")
}

// ErrNotRegistered means the configuration lacks the keys or token that
// `bridge register` writes.
var ErrNotRegistered = errors.New("bridge is not registered")

// LoadIdentity reads the configuration file at path (a missing file is fine
// when the environment carries everything) and overlays the same variables
// from lookupEnv, which win. lookupEnv may be nil (then os.LookupEnv).
func LoadIdentity(path string, lookupEnv func(string) (string, bool), insecureHTTP bool) (*Identity, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	f := &EnvFile{}
	if path != "" {
		var err error
		f, err = ReadEnvFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	get := func(k string) string {
		if v, ok := lookupEnv(k); ok && v != "" {
			return strings.TrimSpace(v)
		}
		v, _ := f.Get(k)
		return strings.TrimSpace(v)
	}
	var missing []string
	need := func(k string) string {
		v := get(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	urls := need(EnvBrokerURL)
	org := get(EnvOrgID)
	if org == "" {
		org = get(EnvWorkspaceID)
	}
	if org == "" {
		missing = append(missing, EnvOrgID)
	}
	boxPriv := need(EnvServerPrivateKey)
	signSeed := need(EnvServerSigningKey)
	brokerBox := need(EnvBrokerPublicKey)
	brokerSign := need(EnvBrokerSigningPubKey)
	token := need(EnvAccessToken)
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s missing from %s and the environment; run `bridge register` first", ErrNotRegistered, strings.Join(missing, ", "), path)
	}
	id := &Identity{OrgID: org, AccessToken: token}
	var err error
	if id.BrokerURLs, err = ParseBrokerURLs(urls, insecureHTTP); err != nil {
		return nil, err
	}
	if ws := get(EnvWorkspaceID); ws != "" && ws != org {
		return nil, fmt.Errorf("config: %s and %s differ", EnvOrgID, EnvWorkspaceID)
	}
	if err := protocol.ValidateID(org); err != nil {
		return nil, fmt.Errorf("config %s: %w", EnvOrgID, err)
	}
	if id.BoxKey, err = crypto.ParseBoxKeyPair(boxPriv); err != nil {
		return nil, fmt.Errorf("config %s: %w", EnvServerPrivateKey, err)
	}
	if id.SigningKey, err = crypto.ParseSigningKey(signSeed); err != nil {
		return nil, fmt.Errorf("config %s: %w", EnvServerSigningKey, err)
	}
	if pub := get(EnvServerPublicKey); pub != "" && pub != id.BoxKey.Public.String() {
		return nil, fmt.Errorf("config: %s does not match %s", EnvServerPublicKey, EnvServerPrivateKey)
	}
	if pub := get(EnvServerSigningPubKey); pub != "" && pub != id.SigningKey.Public().String() {
		return nil, fmt.Errorf("config: %s does not match %s", EnvServerSigningPubKey, EnvServerSigningKey)
	}
	if id.BrokerBoxKey, err = crypto.ParseBoxPublicKey(brokerBox); err != nil {
		return nil, fmt.Errorf("config %s: %w", EnvBrokerPublicKey, err)
	}
	if id.BrokerSigningKey, err = crypto.ParseSigningPublicKey(brokerSign); err != nil {
		return nil, fmt.Errorf("config %s: %w", EnvBrokerSigningPubKey, err)
	}
	if exp := get(EnvAccessTokenExpiresAt); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil {
			return nil, fmt.Errorf("config %s: not an RFC 3339 time", EnvAccessTokenExpiresAt)
		}
		id.AccessTokenExpiresAt = t
	}
	if err := loadLifecycle(id, get, lookupEnv, path); err != nil {
		return nil, err
	}
	return id, nil
}

// Config configures a Bridge. Identity is required; everything else has a
// default.
type Config struct {
	Identity

	// StateDir holds the persistent de-duplication store. Required.
	StateDir string
	// WaitSeconds and MaxMessages are the long-poll parameters (20 and 10).
	WaitSeconds int
	MaxMessages int
	// BacklogMaxMessages is the batch a pull asks for after a pull came
	// back full, i.e. while a backlog drains (protocol.MaxMaxMessages,
	// 100). It must be at least MaxMessages; equal turns the escalation
	// off.
	BacklogMaxMessages int
	// BackoffMin and BackoffMax bound the retry delay after errors (3 s, 30 s).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// DedupTTL is how long delivered message ids are remembered (20 min).
	DedupTTL time.Duration
	// DedupNoSync skips the fsync of the dedup log before each ack. A killed
	// process loses no mark either way (each mark is a write(2)); without
	// the fsync a power loss between delivery and ack may cause one
	// duplicate delivery.
	DedupNoSync bool
	// LocalRetryWindow is how long messages whose delivery failed are
	// retried locally before they are pulled again (2 min; each pull counts
	// a delivery at the broker, which dead-letters after 10).
	LocalRetryWindow time.Duration

	// ForwardURL, when set, receives each Slack request as Slack would have
	// sent it, signed with ForwardSigningSecret. ForwardInteractivityURL and
	// ForwardCommandsURL default to ForwardURL.
	ForwardURL              string
	ForwardInteractivityURL string
	ForwardCommandsURL      string
	ForwardSigningSecret    []byte
	// ForwardTimeout bounds one forward attempt (3 s, as Slack's).
	ForwardTimeout time.Duration
	// DeliveryConcurrency is how many channels are delivered to at once
	// (4); events of one channel are always delivered in order.
	DeliveryConcurrency int

	// SocketMode makes Socket Mode the sink even while no Socket Mode
	// client is connected: events then stay at the broker (nothing is
	// pulled) until a client connects. Without it a connected client still
	// takes every event, and the forward URL or the stream take them while
	// none is connected.
	SocketMode bool
	// SocketModeAppID is the app id the Socket Mode hello names (default:
	// the api_app_id of the first event, or A0SEALRELAY).
	SocketModeAppID string
	// socketAckTimeout is how long an envelope waits for its ack before it
	// is redelivered (3 s, as Slack's; shorter in tests).
	socketAckTimeout time.Duration
	// socketRefresh is how long a Socket Mode connection lives before the
	// client is asked to reconnect (2 h; shorter in tests).
	socketRefresh time.Duration

	// Stream enables the SSE stream on GET /events. StreamBuffer is how many
	// events it keeps for late consumers (1000).
	Stream       bool
	StreamBuffer int
	// StreamBufferBytes bounds the stream buffer's memory (64 MiB); the
	// oldest events are dropped first.
	StreamBufferBytes int

	// Deliver, when set, is called for each new event in order (in-process
	// consumers, tests). A non-nil error means "not delivered": the message
	// is retried later and not acked.
	Deliver func(ctx context.Context, ev *Event) error

	// ListenAddr is the local API's address, used for the Host check
	// (127.0.0.1:7890). AllowRemote disables the loopback checks.
	ListenAddr  string
	AllowRemote bool
	// LocalToken, when set, is required as a bearer token on every local
	// API request. The Slack Web API facade (/api/<method>) requires it as
	// the app's Slack token and answers a wrong one like Slack
	// (invalid_auth, not_authed).
	LocalToken string
	// WebAPIAllowedOrigins are web origins (scheme://host[:port]) whose
	// browser requests the Web API facade answers; requests carrying other
	// browser headers (Origin, Sec-Fetch-Site) are refused.
	WebAPIAllowedOrigins []string

	// HTTPClient talks to the broker (a default client when nil).
	HTTPClient *http.Client
	// ForwardClient talks to the forward URL (a default client when nil).
	ForwardClient *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.WaitSeconds == 0 {
		c.WaitSeconds = 20
	}
	if c.MaxMessages == 0 {
		c.MaxMessages = protocol.DefaultMaxMessages
	}
	if c.BacklogMaxMessages == 0 {
		c.BacklogMaxMessages = max(protocol.MaxMaxMessages, c.MaxMessages)
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = 3 * time.Second
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.DedupTTL == 0 {
		c.DedupTTL = 20 * time.Minute
	}
	if c.LocalRetryWindow == 0 {
		c.LocalRetryWindow = 2 * time.Minute
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = 3 * time.Second
	}
	if c.DeliveryConcurrency == 0 {
		c.DeliveryConcurrency = 4
	}
	if c.socketAckTimeout == 0 {
		c.socketAckTimeout = 3 * time.Second
	}
	if c.socketRefresh == 0 {
		c.socketRefresh = socketRefreshAfter
	}
	if c.StreamBuffer == 0 {
		c.StreamBuffer = 1000
	}
	if c.StreamBufferBytes == 0 {
		c.StreamBufferBytes = 64 << 20
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.ForwardInteractivityURL == "" {
		c.ForwardInteractivityURL = c.ForwardURL
	}
	if c.ForwardCommandsURL == "" {
		c.ForwardCommandsURL = c.ForwardURL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// MinForwardSecretLen is the shortest forward signing secret accepted.
const MinForwardSecretLen = 16

// DefaultListenAddr is the local API's default address.
const DefaultListenAddr = "127.0.0.1:7890"

func (c *Config) validate() error {
	switch {
	case len(c.BrokerURLs) == 0:
		return errors.New("config: no broker URL")
	case c.BoxKey == nil || c.SigningKey == nil:
		return fmt.Errorf("config: %w: agent keys missing", ErrNotRegistered)
	case c.AccessToken == "":
		return fmt.Errorf("config: %w: access token missing", ErrNotRegistered)
	case c.StateDir == "":
		return errors.New("config: no state directory")
	case c.WaitSeconds < 0 || c.WaitSeconds > protocol.MaxWaitSeconds:
		return fmt.Errorf("config: wait seconds must be 0-%d", protocol.MaxWaitSeconds)
	case c.MaxMessages < 1 || c.MaxMessages > protocol.MaxMaxMessages:
		return fmt.Errorf("config: max messages must be 1-%d", protocol.MaxMaxMessages)
	case c.BacklogMaxMessages < c.MaxMessages || c.BacklogMaxMessages > protocol.MaxMaxMessages:
		return fmt.Errorf("config: backlog max messages must be %d-%d (at least max messages)", c.MaxMessages, protocol.MaxMaxMessages)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("config: backoff bounds must be positive and min <= max")
	case c.StreamBuffer < 1 || c.StreamBufferBytes < 1:
		return errors.New("config: stream buffer must hold at least 1 event and 1 byte")
	case c.ForwardURL == "" && !c.Stream && c.Deliver == nil && !c.SocketMode:
		return errors.New("config: nothing to deliver to: set a forward URL, enable the stream or Socket Mode")
	case c.DeliveryConcurrency < 1 || c.DeliveryConcurrency > 64:
		return errors.New("config: delivery concurrency must be 1-64")
	case c.ForwardTimeout < 0:
		return errors.New("config: forward timeout must be positive")
	}
	if err := protocol.ValidateID(c.OrgID); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	for _, u := range []string{c.ForwardURL, c.ForwardInteractivityURL, c.ForwardCommandsURL} {
		if u == "" {
			continue
		}
		if err := validateForwardURL(u); err != nil {
			return err
		}
	}
	if c.ForwardURL != "" && len(c.ForwardSigningSecret) == 0 {
		return errors.New("config: forward mode needs a signing secret (--forward-signing-secret or --forward-signing-secret-file)")
	}
	if c.ForwardURL != "" && len(c.ForwardSigningSecret) < MinForwardSecretLen {
		return fmt.Errorf("config: the forward signing secret is %d bytes; use at least %d (Slack's are 32 hex characters)", len(c.ForwardSigningSecret), MinForwardSecretLen)
	}
	if err := CheckListenAddr(c.ListenAddr, c.AllowRemote); err != nil {
		return err
	}
	if err := validateWebAPIOrigins(c.WebAPIAllowedOrigins); err != nil {
		return err
	}
	return nil
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// RegisterOptions are the inputs of Register.
type RegisterOptions struct {
	// BrokerURL is one broker base URL or a comma-separated list of replicas.
	BrokerURL string
	// OrgID is the Slack installation's id (team or enterprise id).
	OrgID string
	// RegistrationToken is the one-time token shown at the end of the Slack
	// install (older name: auth code).
	RegistrationToken string
	// ConfigPath is the env file to write (DefaultConfigPath when empty).
	ConfigPath string
	// InsecureHTTP allows a plain-http broker URL that is not loopback.
	InsecureHTTP bool
	// HTTPClient is used for the broker calls (a default client when nil).
	HTTPClient *http.Client
}

// ActionableError is an error with a sentence a person can act on. Err is
// the underlying cause (often a *BrokerError).
type ActionableError struct {
	Advice string
	Err    error
}

// Error returns the advice.
func (e *ActionableError) Error() string { return e.Advice }

// Unwrap returns the cause.
func (e *ActionableError) Unwrap() error { return e.Err }

// Register generates the agent's keys, fetches the broker's public keys,
// registers the agent with the registration token, checks that both calls
// named the same broker keys, and writes the configuration file (mode 0600,
// keeping lines it does not own). It returns the new identity.
func Register(ctx context.Context, opts RegisterOptions) (*Identity, error) {
	urls, err := ParseBrokerURLs(opts.BrokerURL, opts.InsecureHTTP)
	if err != nil {
		return nil, &ActionableError{Advice: err.Error(), Err: err}
	}
	if err := protocol.ValidateID(opts.OrgID); err != nil {
		return nil, &ActionableError{Advice: fmt.Sprintf("org id %q is not valid: use the Slack team id shown on the broker's install page (for example T0123ABCD)", opts.OrgID), Err: err}
	}
	token := strings.TrimSpace(opts.RegistrationToken)
	if token == "" {
		return nil, &ActionableError{Advice: "no registration token: pass --registration-token with the token shown at the end of the Slack install"}
	}
	path := opts.ConfigPath
	if path == "" {
		path = DefaultConfigPath()
	}
	// Read the existing file first so that a broken file fails before the
	// single-use token is spent.
	f, err := ReadEnvFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	boxKey, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		return nil, err
	}
	signKey, err := crypto.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	c := newClient(urls, opts.HTTPClient)
	pk, err := c.brokerPubkey(ctx)
	if err != nil {
		return nil, registerAdvice(err, urls[0], opts.OrgID)
	}
	body, err := marshal(protocol.RegisterRequest{
		OrgID:               opts.OrgID,
		WorkspaceID:         opts.OrgID,
		ServerPubkey:        boxKey.Public.String(),
		ServerSigningPubkey: signKey.Public().String(),
		RegistrationToken:   token,
	})
	if err != nil {
		return nil, err
	}
	var rr protocol.RegisterResponse
	if err := c.do(ctx, http.MethodPost, "/api/register", "", body, 30*time.Second, &rr); err != nil {
		return nil, registerAdvice(err, c.current(), opts.OrgID)
	}
	if rr.BrokerPubkey != pk.BrokerPubkey || rr.BrokerSigningPubkey != pk.BrokerSigningPubkey {
		return nil, &ActionableError{Advice: "the broker's public keys from /api/broker-pubkey and /api/register differ: something between you and the broker may be tampering with the connection, or the replicas use different keys. Nothing was written; check the broker URL and its deployment before registering again (the token was used: re-run the Slack install for a new one)"}
	}
	id := &Identity{BrokerURLs: urls, OrgID: opts.OrgID, BoxKey: boxKey, SigningKey: signKey, AccessToken: rr.BrokerAccessToken}
	if id.BrokerBoxKey, err = crypto.ParseBoxPublicKey(rr.BrokerPubkey); err != nil {
		return nil, fmt.Errorf("broker answered an invalid broker_pubkey: %w", err)
	}
	if id.BrokerSigningKey, err = crypto.ParseSigningPublicKey(rr.BrokerSigningPubkey); err != nil {
		return nil, fmt.Errorf("broker answered an invalid broker_signing_pubkey: %w", err)
	}
	if rr.BrokerAccessToken == "" {
		return nil, errors.New("broker answered without an access token")
	}
	expires := strings.TrimSpace(rr.BrokerAccessTokenExpiresAt)
	if expires != "" {
		if id.AccessTokenExpiresAt, err = time.Parse(time.RFC3339, expires); err != nil {
			return nil, errors.New("broker answered an access-token expiry that is not RFC 3339")
		}
	}
	if err := writeIdentity(path, f, id, expires); err != nil {
		return nil, &ActionableError{Advice: fmt.Sprintf("registered, but writing %s failed (%v); fix the path and register again with a new token", path, err), Err: err}
	}
	return id, nil
}

func writeIdentity(path string, f *EnvFile, id *Identity, expires string) error {
	f.Set(EnvBrokerURL, strings.Join(id.BrokerURLs, ","))
	f.Set(EnvOrgID, id.OrgID)
	f.Set(EnvWorkspaceID, id.OrgID)
	f.Set(EnvServerPrivateKey, id.BoxKey.PrivateString())
	f.Set(EnvServerPublicKey, id.BoxKey.Public.String())
	f.Set(EnvServerSigningKey, id.SigningKey.SeedString())
	f.Set(EnvServerSigningPubKey, id.SigningKey.Public().String())
	f.Set(EnvBrokerPublicKey, id.BrokerBoxKey.String())
	f.Set(EnvBrokerSigningPubKey, id.BrokerSigningKey.String())
	f.Set(EnvAccessToken, id.AccessToken)
	if expires != "" {
		f.Set(EnvAccessTokenExpiresAt, expires)
		// The register answer has no issue time: now is close enough
		// for renewing at a third of the lifetime.
		f.Set(EnvAccessTokenIssuedAt, time.Now().UTC().Format(time.RFC3339))
	} else {
		f.Delete(EnvAccessTokenExpiresAt)
		f.Delete(EnvAccessTokenIssuedAt)
	}
	// A new registration has nothing sealed to older keys.
	for _, k := range []string{EnvPreviousServerPrivateKey, EnvPreviousServerKeyRetiredAt, EnvPendingServerPrivateKey, EnvPendingServerSigningKey} {
		f.Delete(k)
	}
	return WriteEnvFile(path, f)
}

// registerAdvice turns a broker failure during registration into a sentence
// a person can act on.
func registerAdvice(err error, brokerURL, orgID string) error {
	install := brokerURL + "/slack/install"
	var be *BrokerError
	if !errors.As(err, &be) {
		if errors.Is(err, ErrUnreachable) {
			return &ActionableError{Advice: fmt.Sprintf("cannot reach the broker (%v) — check --broker-url, DNS and that outbound HTTPS is allowed", err), Err: err}
		}
		return &ActionableError{Advice: fmt.Sprintf("registration failed: %v", err), Err: err}
	}
	var advice string
	switch {
	case be.Contains(protocol.ErrRegistrationTokenUsed):
		advice = "registration token already used — re-run the Slack install and use the new token (install page: " + install + ")"
	case be.Contains(protocol.ErrInvalidRegistrationToken):
		advice = "invalid registration token: it is unknown, expired (tokens last one hour) or belongs to another workspace — re-run the Slack install at " + install + " and copy the new token exactly"
	case be.Contains(protocol.ErrMissingRegistrationProof):
		advice = "the broker received no registration token — pass --registration-token with the token shown at the end of the Slack install"
	case be.Contains(protocol.ErrOrgNotFound):
		advice = fmt.Sprintf("org not found: the broker has no Slack installation for %q — check --org-id against the id on the install page, or install the app first at %s", orgID, install)
	case be.Contains(protocol.ErrAlreadyActive):
		advice = "this agent key is already active at the broker — run `bridge register` again (it generates fresh keys), or `bridge unregister` first"
	case be.Contains(protocol.ErrBodyTooLarge) || be.Status == http.StatusRequestEntityTooLarge:
		advice = "the broker refused the request as too large — check --org-id and --registration-token for pasted garbage"
	case be.Status == http.StatusTooManyRequests || be.Contains(protocol.ErrRateLimited):
		advice = "the broker is rate-limiting registrations — wait a minute and try again"
	case be.Status == http.StatusBadRequest && be.Contains(protocol.ErrInvalidPrefix):
		advice = fmt.Sprintf("the broker rejected the request (%s) — check that --org-id is the Slack team id (letters and digits, e.g. T0123ABCD)", be.Message)
	case be.Status == http.StatusNotFound:
		advice = "the broker URL answered 404 for the registration API — check --broker-url (it is the broker's base URL, without /api)"
	case be.Status >= 500:
		advice = fmt.Sprintf("the broker failed (HTTP %d: %s) — try again in a minute; if it persists, ask the broker's operator to check its logs", be.Status, be.Message)
	default:
		advice = fmt.Sprintf("registration refused (HTTP %d: %s)", be.Status, be.Message)
	}
	return &ActionableError{Advice: advice, Err: err}
}

// Unregister removes the agent at the broker (a signed DELETE
// /api/register) and then clears the keys and token from the config file,
// keeping the broker URL, the org id and every line it does not own. With
// force, local keys are cleared even when the broker call fails.
func Unregister(ctx context.Context, configPath string, insecureHTTP, force bool, hc *http.Client) error {
	if configPath == "" {
		configPath = DefaultConfigPath()
	}
	id, err := LoadIdentity(configPath, func(string) (string, bool) { return "", false }, insecureHTTP)
	if err != nil {
		return err
	}
	c := newClient(id.BrokerURLs, hc)
	ts := time.Now().Unix()
	sig := id.SigningKey.Sign(protocol.UnregisterSigningBytes(id.OrgID, ts))
	body, err := marshal(protocol.UnregisterRequest{OrgID: id.OrgID, WorkspaceID: id.OrgID, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	if err != nil {
		return err
	}
	brokerErr := c.do(ctx, http.MethodDelete, "/api/register", id.AccessToken, body, 30*time.Second, nil)
	if brokerErr != nil {
		var be *BrokerError
		gone := errors.As(brokerErr, &be) && be.Status == http.StatusUnauthorized
		if !force && !gone {
			return &ActionableError{Advice: fmt.Sprintf("unregister failed at the broker (%v); nothing was changed locally — retry, or pass --force to clear the local keys anyway", brokerErr), Err: brokerErr}
		}
	}
	f, err := ReadEnvFile(configPath)
	if err != nil {
		return err
	}
	for _, k := range secretKeys {
		f.Delete(k)
	}
	if err := WriteEnvFile(configPath, f); err != nil {
		return err
	}
	if brokerErr != nil {
		return &ActionableError{Advice: fmt.Sprintf("local keys cleared, but the broker call failed (%v); the broker may still list this agent until its token expires", brokerErr), Err: brokerErr}
	}
	return nil
}

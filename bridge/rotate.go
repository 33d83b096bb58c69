package bridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// RotateOptions configures RotateKeys.
type RotateOptions struct {
	// ConfigPath is the configuration file written by Register.
	ConfigPath string
	// StateDir is `bridge run`'s state directory: its lock tells whether
	// the bridge is running.
	StateDir string
	// InsecureHTTP allows a plain http broker URL that is not loopback.
	InsecureHTTP bool
	// Force rotates even while the key of an earlier rotation is still
	// kept (messages sealed to it, if any are still queued, are lost).
	Force bool
	// HTTPClient talks to the broker (nil: a default client).
	HTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// LookupEnv reads the process environment (nil: os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// ErrBridgeRunning is returned by RotateKeys while `bridge run` holds the
// state directory: it keeps the keys in memory and would go on signing
// with the replaced one.
var ErrBridgeRunning = errors.New("bridge run is running")

// RotateKeys replaces the agent's X25519 and Ed25519 keys (protocol §8.4):
// it generates new keys, stages them in the configuration file, calls
// POST /api/agent/rekey signed with the current key (and the new one as
// proof), then makes the new keys current and keeps the old box key as
// EnvPreviousServerPrivateKey so that messages sealed to it before the
// rotation still open. It refuses while `bridge run` holds the state
// directory. If the broker's answer is lost, running it again finishes
// the rotation with the staged keys.
func RotateKeys(ctx context.Context, opts RotateOptions) (*Identity, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockDir(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("%w (%v): stop it first, rotate, then start it again", ErrBridgeRunning, err)
	}
	defer lock.Close()
	for _, k := range []string{EnvServerPrivateKey, EnvServerSigningKey, EnvAccessToken} {
		if v, ok := opts.LookupEnv(k); ok && v != "" {
			return nil, fmt.Errorf("%s is set in the environment: rotate-keys can only replace keys kept in %s; unset it", k, opts.ConfigPath)
		}
	}
	id, err := LoadIdentity(opts.ConfigPath, opts.LookupEnv, opts.InsecureHTTP)
	if err != nil {
		return nil, err
	}
	f, err := ReadEnvFile(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if id.PreviousBoxKey != nil && !opts.Force {
		return nil, fmt.Errorf("the box key replaced at %s is still kept for messages sealed to it: let `bridge run` drop it (after %v without such messages) or pass --force",
			id.PreviousBoxKeyRetiredAt.UTC().Format(time.RFC3339), PreviousKeyQuiet)
	}
	newBox, newSig, resumed, err := pendingKeys(f)
	if err != nil {
		return nil, err
	}
	if !resumed {
		f.Set(EnvPendingServerPrivateKey, newBox.PrivateString())
		f.Set(EnvPendingServerSigningKey, newSig.SeedString())
		if err := WriteEnvFile(opts.ConfigPath, f); err != nil {
			return nil, fmt.Errorf("stage the new keys: %w", err)
		}
	}
	c := newClient(id.BrokerURLs, opts.HTTPClient)
	err = rekeyCall(ctx, c, id, id.SigningKey, newBox, newSig, opts.Now())
	if err != nil {
		// The broker may have the new keys already (an earlier run, or a
		// lost answer): a rekey to the same keys signed by the new key
		// succeeds exactly then.
		if cerr := rekeyCall(ctx, c, id, newSig, newBox, newSig, opts.Now()); cerr != nil {
			var be *BrokerError
			if errors.As(err, &be) && be.Status >= 400 && be.Status < 500 && !resumed {
				// Refused: the staged keys are useless.
				f.Delete(EnvPendingServerPrivateKey)
				f.Delete(EnvPendingServerSigningKey)
				_ = WriteEnvFile(opts.ConfigPath, f)
				return nil, fmt.Errorf("the broker refused the new keys; nothing changed: %w", err)
			}
			return nil, fmt.Errorf("%w (the new keys are staged in %s; run `bridge rotate-keys` again to finish)", err, opts.ConfigPath)
		}
	}
	now := opts.Now().UTC()
	f.Set(EnvPreviousServerPrivateKey, id.BoxKey.PrivateString())
	f.Set(EnvPreviousServerKeyRetiredAt, now.Format(time.RFC3339))
	f.Set(EnvServerPrivateKey, newBox.PrivateString())
	f.Set(EnvServerPublicKey, newBox.Public.String())
	f.Set(EnvServerSigningKey, newSig.SeedString())
	f.Set(EnvServerSigningPubKey, newSig.Public().String())
	f.Delete(EnvPendingServerPrivateKey)
	f.Delete(EnvPendingServerSigningKey)
	if err := WriteEnvFile(opts.ConfigPath, f); err != nil {
		return nil, fmt.Errorf("the broker has the new keys but writing %s failed (%v); they are staged there as %s: fix the file's directory and run `bridge rotate-keys` again",
			opts.ConfigPath, err, EnvPendingServerPrivateKey)
	}
	prev := id.BoxKey
	id.BoxKey, id.SigningKey = newBox, newSig
	id.PreviousBoxKey, id.PreviousBoxKeyRetiredAt = prev, now
	return id, nil
}

// pendingKeys returns the staged keys of an interrupted rotation, or fresh
// ones.
func pendingKeys(f *EnvFile) (*crypto.BoxKeyPair, *crypto.SigningKey, bool, error) {
	boxS, ok1 := f.Get(EnvPendingServerPrivateKey)
	sigS, ok2 := f.Get(EnvPendingServerSigningKey)
	if ok1 && ok2 && boxS != "" && sigS != "" {
		box, err := crypto.ParseBoxKeyPair(boxS)
		if err != nil {
			return nil, nil, false, fmt.Errorf("config %s: %w", EnvPendingServerPrivateKey, err)
		}
		sig, err := crypto.ParseSigningKey(sigS)
		if err != nil {
			return nil, nil, false, fmt.Errorf("config %s: %w", EnvPendingServerSigningKey, err)
		}
		return box, sig, true, nil
	}
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		return nil, nil, false, err
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		return nil, nil, false, err
	}
	return box, sig, false, nil
}

// rekeyCall sends one POST /api/agent/rekey for the new keys, signed by
// signer and proved by newSig.
func rekeyCall(ctx context.Context, c *client, id *Identity, signer *crypto.SigningKey, newBox *crypto.BoxKeyPair, newSig *crypto.SigningKey, now time.Time) error {
	nb, err := crypto.RandomBytes(crypto.NonceSize)
	if err != nil {
		return err
	}
	nonce := base64.StdEncoding.EncodeToString(nb)
	ts := now.Unix()
	signed := protocol.RekeySigningBytes(id.OrgID, ts, newBox.Public.String(), newSig.Public().String(), nonce)
	body, err := marshal(protocol.RekeyRequest{OrgID: id.OrgID, WorkspaceID: id.OrgID, ProtocolVersion: protocol.Version,
		ServerPubkey: newBox.Public.String(), ServerSigningPubkey: newSig.Public().String(), Nonce: nonce, Timestamp: ts,
		Signature:       protocol.EncodeSignature(signer.Sign(signed)),
		NewKeySignature: protocol.EncodeSignature(newSig.Sign(signed))})
	if err != nil {
		return err
	}
	var resp protocol.RekeyResponse
	if err := c.do(ctx, http.MethodPost, "/api/agent/rekey", id.AccessToken, body, 30*time.Second, &resp); err != nil {
		return fmt.Errorf("rekey: %w", err)
	}
	return nil
}

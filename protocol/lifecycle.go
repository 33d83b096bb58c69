package protocol

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/sealrelay/sealrelay/crypto"
)

// Agent lifecycle extension actions (docs/protocol.md §8.3, §8.4), signed
// like inbox.pull.
const (
	// ActionRenew names a POST /api/agent/renew signature (§8.3).
	ActionRenew = "agent.renew"
	// ActionRekey names a POST /api/agent/rekey signature (§8.4).
	ActionRekey = "agent.rekey"
)

// ErrInvalidNewKeySignature is the 403 error of a rekey whose proof of
// possession of the new signing key does not verify.
const ErrInvalidNewKeySignature = "invalid new_key_signature"

// RenewRequest is the body of POST /api/agent/renew (§8.3).
type RenewRequest struct {
	OrgID           string `json:"org_id,omitempty"`
	WorkspaceID     string `json:"workspace_id,omitempty"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	Nonce           string `json:"nonce"`
	Timestamp       int64  `json:"timestamp"`
	Signature       string `json:"signature"`
}

// Validate checks the fields needed to compute the signed bytes (§4.4 step
// 3a): the nonce must be standard base64 of 24 bytes.
func (r *RenewRequest) Validate() error {
	return validateNonce(r.Nonce)
}

// RenewResponse answers a successful renewal. The new token is returned
// once; the old one keeps working until PreviousTokenValidUntil.
type RenewResponse struct {
	OK                         bool   `json:"ok"`
	BrokerAccessToken          string `json:"broker_access_token"`
	BrokerAccessTokenExpiresAt string `json:"broker_access_token_expires_at"`
	BrokerAccessTokenIssuedAt  string `json:"broker_access_token_issued_at"`
	PreviousTokenValidUntil    string `json:"previous_token_valid_until"`
}

// RenewSigningBytes returns the canonical bytes of an agent.renew
// signature: stable({workspace_id, protocol_version, action: "agent.renew",
// timestamp, payload: {nonce}}).
func RenewSigningBytes(workspaceID string, ts int64, nonce string) []byte {
	return agentSigningBytes(workspaceID, ActionRenew, ts, map[string]any{"nonce": nonce})
}

// RekeyRequest is the body of POST /api/agent/rekey (§8.4). Signature is
// made with the agent's current Ed25519 key, NewKeySignature with the new
// one, both over RekeySigningBytes.
type RekeyRequest struct {
	OrgID               string `json:"org_id,omitempty"`
	WorkspaceID         string `json:"workspace_id,omitempty"`
	ProtocolVersion     string `json:"protocol_version,omitempty"`
	ServerPubkey        string `json:"server_pubkey"`
	ServerSigningPubkey string `json:"server_signing_pubkey"`
	Nonce               string `json:"nonce"`
	Timestamp           int64  `json:"timestamp"`
	Signature           string `json:"signature"`
	NewKeySignature     string `json:"new_key_signature"`
}

// RekeyKeys are the parsed new public keys of a rekey request.
type RekeyKeys struct {
	Box     crypto.BoxPublicKey
	Signing crypto.SigningPublicKey
}

// Validate checks the fields needed to compute the signed bytes (§4.4 step
// 3a) and returns the parsed new keys: both keys standard base64 of 32
// bytes, the X25519 key not a low-order point, the nonce 24 bytes.
func (r *RekeyRequest) Validate() (RekeyKeys, error) {
	var k RekeyKeys
	var err error
	if k.Box, err = crypto.ParseBoxPublicKey(r.ServerPubkey); err != nil {
		return RekeyKeys{}, errors.New("invalid server_pubkey: want standard base64 of a 32-byte X25519 key")
	}
	if crypto.ValidateBoxPublicKey(k.Box) != nil {
		return RekeyKeys{}, errors.New("invalid server_pubkey: low-order X25519 point")
	}
	if k.Signing, err = crypto.ParseSigningPublicKey(r.ServerSigningPubkey); err != nil {
		return RekeyKeys{}, errors.New("invalid server_signing_pubkey: want standard base64 of a 32-byte Ed25519 key")
	}
	if err := validateNonce(r.Nonce); err != nil {
		return RekeyKeys{}, err
	}
	return k, nil
}

// RekeyResponse answers a successful rekey.
type RekeyResponse struct {
	OK bool `json:"ok"`
}

// RekeySigningBytes returns the canonical bytes both rekey signatures
// cover: stable({workspace_id, protocol_version, action: "agent.rekey",
// timestamp, payload: {server_pubkey, server_signing_pubkey, nonce}}).
func RekeySigningBytes(workspaceID string, ts int64, serverPubkey, serverSigningPubkey, nonce string) []byte {
	return agentSigningBytes(workspaceID, ActionRekey, ts, map[string]any{
		"server_pubkey":         serverPubkey,
		"server_signing_pubkey": serverSigningPubkey,
		"nonce":                 nonce,
	})
}

func validateNonce(b64 string) error {
	if len(b64) != base64.StdEncoding.EncodedLen(crypto.NonceSize) {
		return fmt.Errorf("invalid nonce: want standard base64 of %d bytes", crypto.NonceSize)
	}
	if b, err := base64.StdEncoding.DecodeString(b64); err != nil || len(b) != crypto.NonceSize {
		return fmt.Errorf("invalid nonce: want standard base64 of %d bytes", crypto.NonceSize)
	}
	return nil
}

package protocol

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/sealrelay/sealrelay/crypto"
)

// EnvelopeSigningBytes returns the bytes the broker signs for an inbox
// message: "<org_id>|<broker_timestamp>|<encrypted>".
func EnvelopeSigningBytes(orgID string, brokerTimestamp int64, encrypted string) []byte {
	b := make([]byte, 0, len(orgID)+len(encrypted)+24)
	b = append(b, orgID...)
	b = append(b, '|')
	b = strconv.AppendInt(b, brokerTimestamp, 10)
	b = append(b, '|')
	return append(b, encrypted...)
}

func agentSigningBytes(workspaceID, action string, ts int64, payload map[string]any) []byte {
	b, err := Stable(map[string]any{
		"workspace_id":     workspaceID,
		"protocol_version": Version,
		"action":           action,
		"timestamp":        ts,
		"payload":          payload,
	})
	if err != nil {
		// Only invalid UTF-8 in caller strings can fail; such bytes can never
		// carry a valid signature, so sign/verify over a value nobody signs.
		return []byte("\x00unstable")
	}
	return b
}

// PullSigningBytes returns the canonical bytes of an inbox.pull signature.
func PullSigningBytes(workspaceID string, ts int64, maxMessages, waitSeconds int) []byte {
	return agentSigningBytes(workspaceID, ActionPull, ts, map[string]any{
		"max_messages": maxMessages,
		"wait_seconds": waitSeconds,
	})
}

// AckSigningBytes returns the canonical bytes of an inbox.ack signature.
func AckSigningBytes(workspaceID string, ts int64, messageIDs []string) []byte {
	if messageIDs == nil {
		messageIDs = []string{}
	}
	return agentSigningBytes(workspaceID, ActionAck, ts, map[string]any{"message_ids": messageIDs})
}

// UnregisterSigningBytes returns the canonical bytes of an agent.unregister
// signature.
func UnregisterSigningBytes(workspaceID string, ts int64) []byte {
	return agentSigningBytes(workspaceID, ActionUnregister, ts, map[string]any{})
}

// SendSigningBytes returns the canonical bytes of a send signature. Unlike
// the other agent signatures it carries no protocol_version.
func SendSigningBytes(workspaceID, action string, ts int64, encryptedBody, nonce string, r Routing) []byte {
	b, err := Stable(map[string]any{
		"workspace_id":   workspaceID,
		"action":         action,
		"timestamp":      ts,
		"encrypted_body": encryptedBody,
		"nonce":          nonce,
		"routing": map[string]any{
			"channel":   r.Channel,
			"thread_ts": r.ThreadTS,
			"timestamp": r.Timestamp,
			"emoji":     r.Emoji,
		},
	})
	if err != nil {
		return []byte("\x00unstable")
	}
	return b
}

// EncodeSignature returns sig in standard base64.
func EncodeSignature(sig []byte) string { return base64.StdEncoding.EncodeToString(sig) }

// VerifySignature checks a standard-base64 signature of msg by pub.
func VerifySignature(pub crypto.SigningPublicKey, msg []byte, sigB64 string) bool {
	if len(sigB64) != base64.StdEncoding.EncodedLen(crypto.SignatureSize) {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return false
	}
	return pub.Verify(msg, sig)
}

// SealEnvelope marshals env, seals it to the agent's box key, and signs the
// result with the broker's signing key. plaintext may be passed pre-marshalled
// to seal one envelope to many agents; the caller wipes it afterwards.
func SealEnvelope(plaintext []byte, orgID, messageID string, brokerTimestamp int64, agent crypto.BoxPublicKey, broker *crypto.SigningKey) (InboxMessage, error) {
	sealed, err := crypto.SealAnonymous(plaintext, agent)
	if err != nil {
		return InboxMessage{}, fmt.Errorf("seal envelope: %w", err)
	}
	return signSealed(sealed, orgID, messageID, brokerTimestamp, broker), nil
}

// SealEnvelopeMulti is SealEnvelope for one copy of a message sealed to
// several agents: sealer (one per message) shares its ephemeral key among
// the copies. Each copy is still signed on its own, as section 3 requires.
func SealEnvelopeMulti(sealer *crypto.MultiSealer, plaintext []byte, orgID, messageID string, brokerTimestamp int64, agent crypto.BoxPublicKey, broker *crypto.SigningKey) (InboxMessage, error) {
	sealed, err := sealer.Seal(plaintext, agent)
	if err != nil {
		return InboxMessage{}, fmt.Errorf("seal envelope: %w", err)
	}
	return signSealed(sealed, orgID, messageID, brokerTimestamp, broker), nil
}

func signSealed(sealed []byte, orgID, messageID string, brokerTimestamp int64, broker *crypto.SigningKey) InboxMessage {
	enc := base64.StdEncoding.EncodeToString(sealed)
	return InboxMessage{
		MessageID:       messageID,
		OrgID:           orgID,
		WorkspaceID:     orgID,
		Encrypted:       enc,
		BrokerTimestamp: brokerTimestamp,
		BrokerSignature: EncodeSignature(broker.Sign(EnvelopeSigningBytes(orgID, brokerTimestamp, enc))),
	}
}

// Errors from OpenEnvelope. A message failing with any of them is poison: it
// can never be processed and should be acknowledged and counted.
var (
	ErrEnvelopeSignature = errors.New("envelope: broker signature does not verify")
	ErrEnvelopeOpen      = errors.New("envelope: sealed box does not open")
	ErrEnvelopeMalformed = errors.New("envelope: malformed")
)

// MaxEncryptedSize bounds the base64 "encrypted" field accepted by
// OpenEnvelope.
const MaxEncryptedSize = 4 << 20

// OpenEnvelope verifies m's broker signature (before anything else), opens
// its sealed box with the agent's key pair and parses the generic envelope.
// It returns the envelope and the plaintext it was parsed from; the caller
// wipes the plaintext when done.
func OpenEnvelope(m InboxMessage, broker crypto.SigningPublicKey, agent *crypto.BoxKeyPair) (*Envelope, []byte, error) {
	if len(m.Encrypted) > MaxEncryptedSize {
		return nil, nil, fmt.Errorf("%w: encrypted field too large", ErrEnvelopeMalformed)
	}
	if !VerifySignature(broker, EnvelopeSigningBytes(m.OrgID, m.BrokerTimestamp, m.Encrypted), m.BrokerSignature) {
		return nil, nil, ErrEnvelopeSignature
	}
	sealed, err := base64.StdEncoding.DecodeString(m.Encrypted)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encrypted is not standard base64", ErrEnvelopeMalformed)
	}
	pt, err := agent.OpenAnonymous(sealed)
	if err != nil {
		return nil, nil, ErrEnvelopeOpen
	}
	var env Envelope
	if err := json.Unmarshal(pt, &env); err != nil {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: envelope is not JSON", ErrEnvelopeMalformed)
	}
	if env.Source == "" || env.Type == "" {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: envelope lacks source or type", ErrEnvelopeMalformed)
	}
	if env.BrokerTimestamp != m.BrokerTimestamp {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: inner broker_timestamp differs from the signed one", ErrEnvelopeMalformed)
	}
	return &env, pt, nil
}

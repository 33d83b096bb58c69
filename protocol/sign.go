package protocol

import (
	"encoding/base64"
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

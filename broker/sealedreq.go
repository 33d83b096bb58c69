package broker

import (
	"context"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// parseNonce decodes the standard-base64 24-byte nonce of a sealed agent
// request (send, api.call, inbox.respond); a bad one is a 400.
func parseNonce(b64 string) ([crypto.NonceSize]byte, *apiError) {
	var nonce [crypto.NonceSize]byte
	nb, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(nb) != crypto.NonceSize {
		return nonce, errf(http.StatusBadRequest, "invalid nonce: want standard base64 of %d bytes", crypto.NonceSize)
	}
	copy(nonce[:], nb)
	return nonce, nil
}

// parseCiphertext decodes the standard-base64 crypto_box ciphertext of a
// sealed agent request; a bad one is a 400.
func parseCiphertext(b64 string) ([]byte, *apiError) {
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(ct) < crypto.BoxOverhead {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: want standard base64 of a crypto_box ciphertext")
	}
	return ct, nil
}

// useNonce records the nonce of an authenticated agent's sealed request in
// the shared store (protocol §4.4: 600 s, every replica). A nonce seen before
// is a replay (409); a store failure is a 503. outcome names the failure for
// the caller's metrics ("replay" or "error").
func (s *Server) useNonce(ctx context.Context, agentID, nonce string) (outcome string, e *apiError) {
	fresh, err := s.st.UseNonce(ctx, agentID, nonce, protocol.SendNonceTTL*time.Second)
	if err != nil {
		s.logger(ctx).Error("nonce record failed", "err", err)
		return "error", errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	if !fresh {
		return "replay", errf(http.StatusConflict, protocol.ErrReplay)
	}
	return "", nil
}

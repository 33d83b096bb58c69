package broker

import (
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

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
func (k *HashKey) Hash(kind, token string) state.TokenHash {
	msg := make([]byte, 0, len(kind)+1+len(token))
	msg = append(msg, kind...)
	msg = append(msg, 0)
	msg = append(msg, token...)
	var h state.TokenHash
	copy(h[:], crypto.HMACSHA256(k.k, msg))
	crypto.Wipe(msg)
	return h
}

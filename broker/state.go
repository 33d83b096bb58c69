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
type HashKey struct{ mac *crypto.HMACKey }

// DeriveHashKey derives the token hash key from the broker's signing key.
func DeriveHashKey(sk *crypto.SigningKey) (*HashKey, error) {
	seed, err := decodeStd(sk.SeedString())
	if err != nil {
		return nil, err
	}
	defer crypto.Wipe(seed)
	k := crypto.HMACSHA256(seed, []byte("sealrelay/broker/token-hash-key/v1"))
	defer crypto.Wipe(k) // NewHMACKey keeps its own copy
	return &HashKey{mac: crypto.NewHMACKey(k)}, nil
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
	return k.sum(kind, token)
}

// sum is Hash of parts joined with 0x00 bytes: sum(kind, a, b) is
// Hash(kind, a+"\x00"+b) without building that string.
func (k *HashKey) sum(kind string, parts ...string) state.TokenHash {
	n := len(kind)
	for _, p := range parts {
		n += 1 + len(p)
	}
	msg := append(make([]byte, 0, n), kind...)
	for _, p := range parts {
		msg = append(append(msg, 0), p...)
	}
	var h state.TokenHash
	k.mac.Sum(h[:0], msg)
	crypto.Wipe(msg)
	return h
}

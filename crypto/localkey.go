package crypto

import (
	"errors"
	"fmt"
)

// LocalKey is a symmetric XChaCha20-Poly1305 key for data a process keeps
// on its own disk (the bridge's stream spool). Every Seal draws a fresh
// random 192-bit nonce, so nonces do not repeat under one key.
type LocalKey struct{ k [KeySize]byte }

// ErrLocalOpen is returned when a local ciphertext does not authenticate
// (wrong key, wrong associated data, torn or tampered record).
var ErrLocalOpen = errors.New("crypto: local ciphertext does not authenticate")

// DeriveLocalKey derives a key for label from the box private key:
// HMAC-SHA256(private key, "sealrelay/local-key/v1|" + label). The key is
// bound to this identity: a new registration (new key pair) cannot read data
// sealed under the old one.
func (kp *BoxKeyPair) DeriveLocalKey(label string) *LocalKey {
	lk := &LocalKey{}
	mac := HMACSHA256(kp.private[:], []byte("sealrelay/local-key/v1|"+label))
	copy(lk.k[:], mac)
	Wipe(mac)
	return lk
}

// LocalOverhead is how many bytes Seal adds to a message (nonce and tag).
const LocalOverhead = 24 + 16

// Seal encrypts msg with ad as associated data and returns nonce ‖
// ciphertext.
func (lk *LocalKey) Seal(msg, ad []byte) ([]byte, error) {
	out, err := xseal(lk.k[:], msg, ad)
	if err != nil {
		return nil, fmt.Errorf("local seal: %w", err)
	}
	return out, nil
}

// Open decrypts what Seal returned for the same ad.
func (lk *LocalKey) Open(sealed, ad []byte) ([]byte, error) {
	pt, err := xopen(lk.k[:], sealed, ad)
	if err != nil {
		return nil, ErrLocalOpen
	}
	return pt, nil
}

// Wipe zeroes the key.
func (lk *LocalKey) Wipe() { Wipe(lk.k[:]) }

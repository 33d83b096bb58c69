package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"sync"

	"golang.org/x/crypto/nacl/secretbox"
)

// MultiSealer seals one message to several recipients in the
// crypto_box_seal format of SealAnonymous, sharing one ephemeral X25519 key
// among them (randomness re-use in multi-recipient encryption, which is as
// secure as a fresh key per recipient for Diffie–Hellman based schemes:
// Bellare, Boldyreva and Staddon, PKC 2003). crypto/ecdh computes an X25519
// private key's public key when the key is made, so a fresh ephemeral key
// costs a second scalar multiplication per copy; sharing it halves the
// sealing cost of a fan-out.
//
// Each recipient gets its own shared key, and the nonce is
// BLAKE2b-192(epk ‖ recipient pk), so no (shared key, nonce) pair repeats
// across recipients. A recipient sealed to a second time gets a fresh
// ephemeral key (SealAnonymous), so the same shared key and nonce never
// carry two messages. Every output opens with OpenAnonymous (and libsodium's
// crypto_box_seal_open) unchanged. Safe for concurrent use.
type MultiSealer struct {
	eph *ecdh.PrivateKey
	epk []byte

	mu   sync.Mutex
	used map[BoxPublicKey]struct{}
}

// NewMultiSealer makes a sealer with a fresh ephemeral key. Use one per
// message: a recipient should never see the same ephemeral key on two
// different messages (it would link them).
func NewMultiSealer() (*MultiSealer, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: ephemeral key: %w", err)
	}
	return &MultiSealer{eph: eph, epk: eph.PublicKey().Bytes(), used: map[BoxPublicKey]struct{}{}}, nil
}

// Seal encrypts msg to recipient; the output is a crypto_box_seal box.
func (m *MultiSealer) Seal(msg []byte, recipient BoxPublicKey) ([]byte, error) {
	m.mu.Lock()
	_, seen := m.used[recipient]
	m.used[recipient] = struct{}{}
	m.mu.Unlock()
	if seen {
		return SealAnonymous(msg, recipient)
	}
	k, err := sharedKey(m.eph, recipient)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer Wipe(k[:])
	nonce := sealNonce(m.epk, recipient[:])
	out := make([]byte, 0, SealedBoxOverhead+len(msg))
	out = append(out, m.epk...)
	return secretbox.Seal(out, msg, &nonce, &k), nil
}

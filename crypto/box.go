package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	//lint:ignore SA1019 HSalsa20 is crypto_box's key derivation (nacl/box uses this package too); no other API exposes it.
	"golang.org/x/crypto/salsa20/salsa"

	"github.com/sealrelay/sealrelay/internal/boundedcache"
)

// NonceSize is the size of a crypto_box nonce.
const NonceSize = 24

// SealedBoxOverhead is how much longer a sealed box is than its plaintext.
const SealedBoxOverhead = box.AnonymousOverhead

// BoxOverhead is how much longer a crypto_box ciphertext is than its
// plaintext.
const BoxOverhead = box.Overhead

// ErrOpen is returned when a box does not open: wrong key, tampered bytes or
// truncated input. It deliberately says nothing more.
var ErrOpen = errors.New("crypto: box does not open")

// SealAnonymous encrypts msg to recipient in the libsodium crypto_box_seal
// format (ephemeral public key ‖ box, nonce = BLAKE2b-192(epk ‖ pk)). Only the
// recipient can open it.
//
// It is built from crypto/ecdh directly rather than box.SealAnonymous: the
// x/crypto wrappers recompute a public key inside every scalar
// multiplication, which doubles the cost of the hot path (one seal per agent
// per event). The output is byte-compatible; the test vectors and
// box.OpenAnonymous check it.
func SealAnonymous(msg []byte, recipient BoxPublicKey) ([]byte, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: ephemeral key: %w", err)
	}
	k, err := sharedKey(eph, recipient)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	defer Wipe(k[:])
	epk := eph.PublicKey().Bytes()
	nonce := sealNonce(epk, recipient[:])
	out := make([]byte, 0, SealedBoxOverhead+len(msg))
	out = append(out, epk...)
	return secretbox.Seal(out, msg, &nonce, &k), nil
}

// OpenAnonymous opens a sealed box addressed to kp.
func (kp *BoxKeyPair) OpenAnonymous(sealed []byte) ([]byte, error) {
	if len(sealed) < SealedBoxOverhead {
		return nil, ErrOpen
	}
	var epk BoxPublicKey
	copy(epk[:], sealed[:KeySize])
	k, err := sharedKey(kp.ecdh, epk)
	if err != nil {
		return nil, ErrOpen
	}
	defer Wipe(k[:])
	nonce := sealNonce(epk[:], kp.Public[:])
	out, ok := secretbox.Open(make([]byte, 0, len(sealed)-SealedBoxOverhead), sealed[KeySize:], &nonce, &k)
	if !ok {
		return nil, ErrOpen
	}
	return out, nil
}

var errLowOrder = errors.New("peer public key is a low-order point")

// checkKey is a fixed private key used only to test public keys for low
// order; its secrecy does not matter.
var checkKey, _ = ecdh.X25519().NewPrivateKey(make([]byte, KeySize))

// ValidateBoxPublicKey reports whether k can be used as a peer key: it must
// not be a low-order point, for which every shared key is the all-zero
// value. It costs one X25519 multiplication; call it where keys enter the
// system (registration), not per message.
func ValidateBoxPublicKey(k BoxPublicKey) error {
	if _, err := sharedKey(checkKey, k); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return nil
}

// sharedKey computes the crypto_box shared key: HSalsa20(X25519(priv, peer)).
// A low-order peer key (all-zero X25519 output) is an error.
func sharedKey(priv *ecdh.PrivateKey, peer BoxPublicKey) ([KeySize]byte, error) {
	var k [KeySize]byte
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return k, errLowOrder
	}
	s, err := priv.ECDH(pub)
	if err != nil {
		return k, errLowOrder
	}
	copy(k[:], s)
	Wipe(s)
	var zeros [16]byte
	salsa.HSalsa20(&k, &zeros, &k, &salsa.Sigma)
	return k, nil
}

func sealNonce(epk, pk []byte) [NonceSize]byte {
	h, _ := blake2b.New(NonceSize, nil) // cannot fail for size 24 without key
	h.Write(epk)
	h.Write(pk)
	var n [NonceSize]byte
	copy(n[:], h.Sum(nil))
	return n
}

// Seal encrypts msg from kp to peer with a fresh random nonce (crypto_box,
// no precomputation). Prefer SharedKey for repeated use.
func (kp *BoxKeyPair) Seal(msg []byte, peer BoxPublicKey) (ciphertext []byte, nonce [NonceSize]byte, err error) {
	if _, err = rand.Read(nonce[:]); err != nil {
		return nil, nonce, fmt.Errorf("box nonce: %w", err)
	}
	pk := [KeySize]byte(peer)
	return box.Seal(nil, msg, &nonce, &pk, &kp.private), nonce, nil
}

// Open opens a crypto_box ciphertext sent by peer to kp (no precomputation).
func (kp *BoxKeyPair) Open(ciphertext []byte, nonce *[NonceSize]byte, peer BoxPublicKey) ([]byte, error) {
	pk := [KeySize]byte(peer)
	out, ok := box.Open(nil, ciphertext, nonce, &pk, &kp.private)
	if !ok {
		return nil, ErrOpen
	}
	return out, nil
}

// SharedKey is a precomputed crypto_box key between two parties. Opening with
// it skips the X25519 scalar multiplication that dominates box.Open.
type SharedKey struct {
	k [KeySize]byte
	// invalid marks a key computed with a low-order peer public key: it
	// seals and opens nothing.
	invalid bool
}

// Precompute derives the shared key between kp and peer. For a low-order
// peer key (which no honest party generates) the result refuses every Seal
// and Open.
func (kp *BoxKeyPair) Precompute(peer BoxPublicKey) *SharedKey {
	k, err := sharedKey(kp.ecdh, peer)
	return &SharedKey{k: k, invalid: err != nil}
}

// Seal encrypts msg with a fresh random nonce.
func (s *SharedKey) Seal(msg []byte) (ciphertext []byte, nonce [NonceSize]byte, err error) {
	if s.invalid {
		return nil, nonce, fmt.Errorf("box seal: %w", errLowOrder)
	}
	if _, err = rand.Read(nonce[:]); err != nil {
		return nil, nonce, fmt.Errorf("box nonce: %w", err)
	}
	return box.SealAfterPrecomputation(make([]byte, 0, len(msg)+BoxOverhead), msg, &nonce, &s.k), nonce, nil
}

// SealWithNonce encrypts msg with the given nonce. The nonce must never be
// reused with the same key; this exists for known-answer tests.
func (s *SharedKey) SealWithNonce(msg []byte, nonce *[NonceSize]byte) []byte {
	return box.SealAfterPrecomputation(make([]byte, 0, len(msg)+BoxOverhead), msg, nonce, &s.k)
}

// Open opens ciphertext sealed with nonce.
func (s *SharedKey) Open(ciphertext []byte, nonce *[NonceSize]byte) ([]byte, error) {
	if s.invalid || len(ciphertext) < BoxOverhead {
		return nil, ErrOpen
	}
	out, ok := box.OpenAfterPrecomputation(make([]byte, 0, len(ciphertext)-BoxOverhead), ciphertext, nonce, &s.k)
	if !ok {
		return nil, ErrOpen
	}
	return out, nil
}

// Wipe overwrites the shared key. It must not be used afterwards.
func (s *SharedKey) Wipe() { Wipe(s.k[:]) }

// SharedKeyCache caches the shared keys between one local key pair and many
// peers, bounded in size (internal/boundedcache: a full cache evicts its
// oldest key). It is safe for concurrent use.
type SharedKeyCache struct {
	local *BoxKeyPair
	// Evicted keys may still be in use by a caller: they are dropped, not
	// wiped (no OnEvict hook).
	keys *boundedcache.Cache[BoxPublicKey, *SharedKey]
}

// NewSharedKeyCache returns a cache for local holding at most max keys
// (max ≤ 0 means 10,000).
func NewSharedKeyCache(local *BoxKeyPair, max int) *SharedKeyCache {
	return &SharedKeyCache{local: local, keys: boundedcache.New(boundedcache.Options[BoxPublicKey, *SharedKey]{Max: max})}
}

// Get returns the shared key with peer, computing it on first use (outside
// the cache's lock; concurrent first uses end up sharing one key).
func (c *SharedKeyCache) Get(peer BoxPublicKey) *SharedKey {
	if k, ok := c.keys.Get(peer); ok {
		return k
	}
	k, _ := c.keys.Add(peer, c.local.Precompute(peer))
	return k
}

// Forget removes peer's shared key, e.g. when an agent unregisters.
func (c *SharedKeyCache) Forget(peer BoxPublicKey) { c.keys.Delete(peer) }

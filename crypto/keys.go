package crypto

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeySize is the size in bytes of X25519 keys, Ed25519 public keys and seeds.
const KeySize = 32

// SignatureSize is the size in bytes of an Ed25519 signature.
const SignatureSize = ed25519.SignatureSize

// ErrInvalidKey is returned for key material of the wrong size or encoding.
var ErrInvalidKey = errors.New("crypto: invalid key")

// BoxPublicKey is an X25519 public key.
type BoxPublicKey [KeySize]byte

// String returns the key in standard base64.
func (k BoxPublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// BoxKeyPair is an X25519 key pair for crypto_box and sealed boxes.
type BoxKeyPair struct {
	Public  BoxPublicKey
	private [KeySize]byte
	ecdh    *ecdh.PrivateKey
}

// GenerateBoxKeyPair returns a fresh random X25519 key pair.
func GenerateBoxKeyPair() (*BoxKeyPair, error) {
	var priv [KeySize]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return nil, fmt.Errorf("generate box key: %w", err)
	}
	kp, err := BoxKeyPairFromPrivate(priv[:])
	Wipe(priv[:])
	return kp, err
}

// BoxKeyPairFromPrivate builds a key pair from a 32-byte private key,
// deriving the public key. The input is copied.
func BoxKeyPairFromPrivate(private []byte) (*BoxKeyPair, error) {
	if len(private) != KeySize {
		return nil, fmt.Errorf("%w: box private key must be %d bytes, got %d", ErrInvalidKey, KeySize, len(private))
	}
	kp := &BoxKeyPair{}
	copy(kp.private[:], private)
	k, err := ecdh.X25519().NewPrivateKey(kp.private[:])
	if err != nil {
		return nil, fmt.Errorf("%w: box private key: %v", ErrInvalidKey, err)
	}
	kp.ecdh = k
	copy(kp.Public[:], k.PublicKey().Bytes())
	return kp, nil
}

// ParseBoxKeyPair decodes a standard-base64 private key and derives its pair.
func ParseBoxKeyPair(privateB64 string) (*BoxKeyPair, error) {
	raw, err := decodeKey(privateB64, "box private key")
	if err != nil {
		return nil, err
	}
	defer Wipe(raw)
	return BoxKeyPairFromPrivate(raw)
}

// PrivateString returns the private key in standard base64, for writing key
// files. Handle the result as a secret.
func (kp *BoxKeyPair) PrivateString() string {
	return base64.StdEncoding.EncodeToString(kp.private[:])
}

// ParseBoxPublicKey decodes a standard-base64 X25519 public key.
func ParseBoxPublicKey(b64 string) (BoxPublicKey, error) {
	var k BoxPublicKey
	raw, err := decodeKey(b64, "box public key")
	if err != nil {
		return k, err
	}
	copy(k[:], raw)
	return k, nil
}

// SigningKey is an Ed25519 private key kept as its 32-byte seed.
type SigningKey struct {
	seed [KeySize]byte
	priv ed25519.PrivateKey
}

// GenerateSigningKey returns a fresh random Ed25519 key.
func GenerateSigningKey() (*SigningKey, error) {
	var seed [KeySize]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	k, err := SigningKeyFromSeed(seed[:])
	Wipe(seed[:])
	return k, err
}

// SigningKeyFromSeed builds a signing key from a 32-byte seed (copied).
func SigningKeyFromSeed(seed []byte) (*SigningKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: signing seed must be %d bytes, got %d", ErrInvalidKey, ed25519.SeedSize, len(seed))
	}
	k := &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}
	copy(k.seed[:], seed)
	return k, nil
}

// ParseSigningKey decodes a standard-base64 seed. For compatibility it also
// accepts a 64-byte libsodium secret key (seed ‖ public key) and uses its seed.
func ParseSigningKey(b64 string) (*SigningKey, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: signing seed is not standard base64", ErrInvalidKey)
	}
	defer Wipe(raw)
	if len(raw) == ed25519.PrivateKeySize {
		raw = raw[:ed25519.SeedSize]
	}
	return SigningKeyFromSeed(raw)
}

// SeedString returns the seed in standard base64. Handle it as a secret.
func (k *SigningKey) SeedString() string { return base64.StdEncoding.EncodeToString(k.seed[:]) }

// Public returns the Ed25519 public key.
func (k *SigningKey) Public() SigningPublicKey {
	var p SigningPublicKey
	copy(p[:], k.priv[ed25519.SeedSize:])
	return p
}

// Sign returns the detached signature of msg.
func (k *SigningKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// SigningPublicKey is an Ed25519 public key.
type SigningPublicKey [KeySize]byte

// String returns the key in standard base64.
func (p SigningPublicKey) String() string { return base64.StdEncoding.EncodeToString(p[:]) }

// Verify reports whether sig is a valid signature of msg by p.
func (p SigningPublicKey) Verify(msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	return ed25519.Verify(p[:], msg, sig)
}

// ParseSigningPublicKey decodes a standard-base64 Ed25519 public key.
func ParseSigningPublicKey(b64 string) (SigningPublicKey, error) {
	var p SigningPublicKey
	raw, err := decodeKey(b64, "signing public key")
	if err != nil {
		return p, err
	}
	copy(p[:], raw)
	return p, nil
}

func decodeKey(b64, what string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not standard base64", ErrInvalidKey, what)
	}
	if len(raw) != KeySize {
		Wipe(raw)
		return nil, fmt.Errorf("%w: %s must be %d bytes, got %d", ErrInvalidKey, what, KeySize, len(raw))
	}
	return raw, nil
}

package crypto

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"sync"
)

// Equal reports whether a and b are equal, in time that depends only on their
// lengths. Use it for every comparison of secrets, tokens and MACs.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// EqualString is Equal for strings.
func EqualString(a, b string) bool { return Equal([]byte(a), []byte(b)) }

// HMACSHA256 returns HMAC-SHA256(key, msg).
func HMACSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// HMACKey computes HMAC-SHA256 under one fixed key, reusing keyed hash
// states between calls: hmac.New allocates two SHA-256 states and derives
// the key pads each time, which costs more than the MAC of a short message.
// Safe for concurrent use.
type HMACKey struct{ pool sync.Pool }

// NewHMACKey returns an HMACKey for key (copied).
func NewHMACKey(key []byte) *HMACKey {
	key = append([]byte(nil), key...)
	k := &HMACKey{}
	k.pool.New = func() any { return hmac.New(sha256.New, key) }
	return k
}

// Sum appends HMAC-SHA256(key, msg) to dst and returns the result.
func (k *HMACKey) Sum(dst, msg []byte) []byte {
	m := k.pool.Get().(hash.Hash)
	m.Write(msg)
	dst = m.Sum(dst)
	m.Reset()
	k.pool.Put(m)
	return dst
}

// VerifyHMACSHA256 reports, in constant time, whether mac is
// HMAC-SHA256(key, msg).
func VerifyHMACSHA256(key, msg, mac []byte) bool {
	return hmac.Equal(HMACSHA256(key, msg), mac)
}

// SHA256 returns the SHA-256 digest of b.
func SHA256(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// Wipe overwrites b with zeros. Go may have copied the bytes elsewhere (the
// garbage collector moves nothing, but conversions to string and append do),
// so Wipe limits exposure; it does not guarantee erasure.
func Wipe(b []byte) {
	clear(b)
}

// RandomBytes returns n bytes from the system's secure random source.
func RandomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random bytes: %w", err)
	}
	return b, nil
}

// RandomToken returns a URL-safe random token carrying n random bytes
// (unpadded base64url, so 32 bytes give 43 characters).
func RandomToken(n int) (string, error) {
	b, err := RandomBytes(n)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

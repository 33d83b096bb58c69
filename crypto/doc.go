// Package crypto is the only package in sealrelay that touches cryptographic
// primitives. It wraps golang.org/x/crypto and the standard library in a
// small API:
//
//   - X25519 box key pairs and Ed25519 signing keys (kept as 32-byte seeds),
//     in the standard-base64 encoding used on the wire;
//   - libsodium-compatible sealed boxes (crypto_box_seal) for broker → agent
//     messages, and crypto_box with a precomputed, cached shared key for
//     agent → broker messages;
//   - detached Ed25519 signatures;
//   - constant-time comparison, HMAC-SHA256, random tokens and Wipe;
//   - KMS-style envelope encryption of secrets at rest (Keyring), each secret
//     under a fresh data key bound to its owner id.
//
// Nothing here logs, and no error carries key material.
package crypto

package crypto

// DeriveKey derives a 32-byte subkey from the signing key's seed for the
// purpose named by label (a domain-separation string such as
// "sealrelay/broker/audit-chain-key/v1"):
//
//	subkey = HMAC-SHA256(key = seed, msg = label)
//
// Different labels give independent keys; the seed itself never leaves this
// package. The caller should Wipe the result when done with it.
func (k *SigningKey) DeriveKey(label string) []byte {
	return HMACSHA256(k.seed[:], []byte(label))
}

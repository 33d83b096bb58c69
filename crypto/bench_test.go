package crypto

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/curve25519"
)

var benchMsg = make([]byte, 2048)

func BenchmarkSealAnonymous(b *testing.B) {
	kp := mustBox(b)
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		if _, err := SealAnonymous(benchMsg, kp.Public); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenAnonymous(b *testing.B) {
	kp := mustBox(b)
	sealed, _ := SealAnonymous(benchMsg, kp.Public)
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		if _, err := kp.OpenAnonymous(sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	k, _ := GenerateSigningKey()
	msg := make([]byte, 256)
	for b.Loop() {
		k.Sign(msg)
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := GenerateSigningKey()
	msg := make([]byte, 256)
	sig := k.Sign(msg)
	pub := k.Public()
	for b.Loop() {
		if !pub.Verify(msg, sig) {
			b.Fatal("verify")
		}
	}
}

func BenchmarkBoxOpen(b *testing.B) {
	a, peer := mustBox(b), mustBox(b)
	msg := make([]byte, 512)
	ct, nonce, _ := a.Seal(msg, peer.Public)
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := peer.Open(ct, &nonce, a.Public); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("precomputed", func(b *testing.B) {
		k := NewSharedKeyCache(peer, 0).Get(a.Public)
		for b.Loop() {
			if _, err := k.Open(ct, &nonce); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkKeyring(b *testing.B) {
	kr := testKeyring(b, 1)
	secret := []byte("xoxb-0000000000-0000000000000-abcdefghijklmnopqrstuvwx")
	b.Run("encrypt", func(b *testing.B) {
		for b.Loop() {
			if _, err := kr.Encrypt(secret, "T0123ABCD"); err != nil {
				b.Fatal(err)
			}
		}
	})
	stored, _ := kr.Encrypt(secret, "T0123ABCD")
	b.Run("decrypt", func(b *testing.B) {
		for b.Loop() {
			pt, err := kr.Decrypt(stored, "T0123ABCD")
			if err != nil {
				b.Fatal(err)
			}
			Wipe(pt)
		}
	})
}

// BenchmarkEphemeralKey compares the ways to make the seal's ephemeral
// X25519 key pair with what the approved modules offer (Go 1.26,
// x/crypto v0.58): crypto/ecdh's GenerateKey (what SealAnonymous uses),
// x/crypto's curve25519.X25519 with the base point and ScalarBaseMult
// (both wrap crypto/ecdh's ladder), and crypto/ed25519's fixed-base
// multiply (NewKeyFromSeed: SHA-512 + comb table), the first half of the
// Ed25519 → X25519 birational route, before the conversion. The last one
// is faster, but its scalar can then only be used for the ECDH through
// crypto/ecdh.NewPrivateKey, which runs the base-point ladder again, so
// the route does not pay without a hand-written X25519 ladder.
func BenchmarkEphemeralKey(b *testing.B) {
	seed := make([]byte, 32)
	b.Run("ecdh-GenerateKey", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdh.X25519().GenerateKey(rand.Reader); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("curve25519-X25519-Basepoint", func(b *testing.B) {
		for b.Loop() {
			if _, err := curve25519.X25519(seed, curve25519.Basepoint); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("curve25519-ScalarBaseMult", func(b *testing.B) {
		var dst, s [32]byte
		for b.Loop() {
			curve25519.ScalarBaseMult(&dst, &s)
		}
	})
	b.Run("ed25519-fixed-base", func(b *testing.B) {
		for b.Loop() {
			ed25519.NewKeyFromSeed(seed)
		}
	})
}

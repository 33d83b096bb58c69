package crypto

import (
	"testing"
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

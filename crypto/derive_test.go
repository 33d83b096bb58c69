package crypto

import (
	"bytes"
	"testing"
)

func TestDeriveKey(t *testing.T) {
	t.Parallel()
	a, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := a.DeriveKey("label/one"), a.DeriveKey("label/two")
	switch {
	case len(k1) != 32:
		t.Fatalf("derived key of %d bytes, want 32", len(k1))
	case !bytes.Equal(k1, a.DeriveKey("label/one")):
		t.Fatal("DeriveKey is not deterministic")
	case bytes.Equal(k1, k2):
		t.Fatal("two labels gave the same key")
	case bytes.Equal(k1, b.DeriveKey("label/one")):
		t.Fatal("two seeds gave the same key")
	case !bytes.Equal(k1, HMACSHA256(a.seed[:], []byte("label/one"))):
		t.Fatal("DeriveKey is not HMAC-SHA256(seed, label)")
	}
}

package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestLocalKeySealOpen(t *testing.T) {
	t.Parallel()
	kp := mustBox(t)
	k := kp.DeriveLocalKey("spool")
	a, err := k.Seal([]byte("body"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := k.Seal([]byte("body"), []byte("ad"))
	if bytes.Equal(a[:24], b[:24]) {
		t.Fatal("nonce repeated")
	}
	if pt, err := k.Open(a, []byte("ad")); err != nil || string(pt) != "body" {
		t.Fatalf("open: %q %v", pt, err)
	}
	other := mustBox(t).DeriveLocalKey("spool")
	flipped := append([]byte(nil), a...)
	flipped[len(flipped)-1] ^= 1
	cases := []struct {
		name   string
		key    *LocalKey
		sealed []byte
		ad     string
	}{
		{"other ad", k, a, "xx"},
		{"other identity", other, a, "ad"},
		{"other label", kp.DeriveLocalKey("x"), a, "ad"},
		{"flipped byte", k, flipped, "ad"},
		{"short", k, a[:10], "ad"},
	}
	for _, tc := range cases {
		if _, err := tc.key.Open(tc.sealed, []byte(tc.ad)); !errors.Is(err, ErrLocalOpen) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

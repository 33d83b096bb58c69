package broker

import (
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
)

// TestHashKeyDerivation pins the token hashes and derived message ids to
// their documented definition (HashKey), so that a faster computation keeps
// matching what other replicas and stored records hold.
func TestHashKeyDerivation(t *testing.T) {
	t.Parallel()
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	sk, err := crypto.ParseSigningKey(base64.StdEncoding.EncodeToString(seed))
	if err != nil {
		t.Fatal(err)
	}
	hk, err := DeriveHashKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	key := crypto.HMACSHA256(seed, []byte("sealrelay/broker/token-hash-key/v1"))
	ref := func(msg string) string { return hex.EncodeToString(crypto.HMACSHA256(key, []byte(msg))) }
	cases := []struct {
		name, kind, token string
	}{
		{"access token", KindAccessToken, "tok-123"},
		{"empty token", KindRegistrationToken, ""},
		{"long token", KindOAuthState, string(make([]byte, 600))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for range 2 {
				if got, want := hk.Hash(c.kind, c.token).String(), ref(c.kind+"\x00"+c.token); got != want {
					t.Fatalf("Hash = %s, want %s", got, want)
				}
			}
		})
	}
	s := &Server{hk: hk}
	if got, want := s.messageID("T0ORG", "Ev123", "ag-1"), ref(KindMessageID + "\x00T0ORG\x00Ev123\x00ag-1")[:32]; got != want {
		t.Fatalf("messageID = %s, want %s", got, want)
	}
}

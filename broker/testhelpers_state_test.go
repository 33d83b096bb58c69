package broker

import (
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// testHashKey is a fixed token hash key for tests that write state
// records directly.
func testHashKey(t testing.TB) *HashKey {
	sk, err := crypto.SigningKeyFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	hk, err := DeriveHashKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return hk
}

// testAgent is an agent record with fresh keys and a derived access token
// hash.
func testAgent(t testing.TB, hk *HashKey, id, org string, now time.Time) *state.Agent {
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return &state.Agent{ID: id, OrgID: org, BoxPublicKey: box.Public, SigningPublicKey: sig.Public(),
		CreatedAt: now, AccessTokenHash: hk.Hash(KindAccessToken, "access-"+id),
		AccessTokenExpiresAt: now.Add(state.DefaultAccessTokenTTL)}
}

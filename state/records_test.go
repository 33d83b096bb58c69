package state_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// numbers renders b as a JSON array of numbers, the form the bbolt state
// wrote keys and hashes in before they marshalled themselves.
func numbers(b []byte) string {
	parts := make([]string, len(b))
	for i, v := range b {
		parts[i] = strconv.Itoa(int(v))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestAgentEncoding: an agent marshals its keys in their text form and its
// token hash in hex (no arrays of numbers), reads that form back, and still
// reads the older array form.
func TestAgentEncoding(t *testing.T) {
	t.Parallel()
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	var h state.TokenHash
	for i := range h {
		h[i] = byte(i * 7)
	}
	at := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	want := state.Agent{ID: "ag-1", OrgID: "T1", BoxPublicKey: box.Public, SigningPublicKey: sig.Public(),
		CreatedAt: at, AccessTokenHash: h, AccessTokenExpiresAt: at.Add(time.Hour)}
	enc, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{`"box_public_key":"` + box.Public.String() + `"`,
		`"signing_public_key":"` + sig.Public().String() + `"`, `"access_token_hash":"` + h.String() + `"`} {
		if !strings.Contains(string(enc), sub) {
			t.Fatalf("encoded agent %s lacks %s", enc, sub)
		}
	}
	pub := sig.Public()
	old := `{"id":"ag-1","org_id":"T1","box_public_key":` + numbers(box.Public[:]) +
		`,"signing_public_key":` + numbers(pub[:]) + `,"created_at":"2026-02-01T12:00:00Z","access_token_hash":` +
		numbers(h[:]) + `,"access_token_expires_at":"2026-02-01T13:00:00Z"}`
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"text form", string(enc), true},
		{"old bbolt form", old, true},
		{"short hash", strings.Replace(string(enc), h.String(), "abcd", 1), false},
		{"bad key", strings.Replace(string(enc), box.Public.String(), "not-base64", 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got state.Agent
			err := json.Unmarshal([]byte(tt.in), &got)
			if (err == nil) != tt.ok {
				t.Fatalf("Unmarshal err = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (got.BoxPublicKey != want.BoxPublicKey || got.SigningPublicKey != want.SigningPublicKey ||
				got.AccessTokenHash != want.AccessTokenHash || !got.CreatedAt.Equal(want.CreatedAt) || got.ID != want.ID) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
		})
	}
}

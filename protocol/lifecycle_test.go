package protocol

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
)

var updateLifecycle = flag.Bool("update-lifecycle", false, "rewrite testdata/lifecycle-2026-02-1.json from the code")

const lifecycleVectorsPath = "testdata/lifecycle-2026-02-1.json"

// lifecycleVectors are the §8.3/§8.4 test vectors. The agent's current keys
// are those of protocol-2026-02-1.json; the new keys of the rekey vector
// come from fixed seeds so that the file is reproducible
// (go test ./protocol -run TestVectorLifecycle -update-lifecycle).
type lifecycleVectors struct {
	ProtocolVersion string `json:"protocol_version"`
	NewKeys         struct {
		AgentBoxPrivateKey    string `json:"agent_box_private_key"`
		AgentBoxPublicKey     string `json:"agent_box_public_key"`
		AgentSigningSeed      string `json:"agent_signing_seed"`
		AgentSigningPublicKey string `json:"agent_signing_public_key"`
	} `json:"new_keys"`
	Renew struct {
		Request   RenewRequest `json:"request"`
		Canonical string       `json:"canonical"`
	} `json:"agent_renew"`
	Rekey struct {
		Request   RekeyRequest `json:"request"`
		Canonical string       `json:"canonical"`
	} `json:"agent_rekey"`
}

func buildLifecycleVectors(t *testing.T) []byte {
	t.Helper()
	_, k := loadVectors(t)
	newBox, err := crypto.BoxKeyPairFromPrivate(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		t.Fatal(err)
	}
	newSig, err := crypto.SigningKeyFromSeed(bytes.Repeat([]byte{0xa5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	var v lifecycleVectors
	v.ProtocolVersion = Version
	v.NewKeys.AgentBoxPrivateKey = newBox.PrivateString()
	v.NewKeys.AgentBoxPublicKey = newBox.Public.String()
	v.NewKeys.AgentSigningSeed = newSig.SeedString()
	v.NewKeys.AgentSigningPublicKey = newSig.Public().String()

	const org, ts = "T0123ABCD", int64(1771465000)
	nonce := EncodeSignature(bytes.Repeat([]byte{0x11}, crypto.NonceSize))
	rn := RenewRequest{OrgID: org, WorkspaceID: org, ProtocolVersion: Version, Nonce: nonce, Timestamp: ts}
	v.Renew.Canonical = string(RenewSigningBytes(org, ts, nonce))
	rn.Signature = EncodeSignature(k.agentSigning.Sign([]byte(v.Renew.Canonical)))
	v.Renew.Request = rn

	nonce2 := EncodeSignature(bytes.Repeat([]byte{0x22}, crypto.NonceSize))
	rk := RekeyRequest{OrgID: org, WorkspaceID: org, ProtocolVersion: Version,
		ServerPubkey: newBox.Public.String(), ServerSigningPubkey: newSig.Public().String(), Nonce: nonce2, Timestamp: ts}
	v.Rekey.Canonical = string(RekeySigningBytes(org, ts, rk.ServerPubkey, rk.ServerSigningPubkey, nonce2))
	rk.Signature = EncodeSignature(k.agentSigning.Sign([]byte(v.Rekey.Canonical)))
	rk.NewKeySignature = EncodeSignature(newSig.Sign([]byte(v.Rekey.Canonical)))
	v.Rekey.Request = rk

	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestVectorLifecycle checks the code against the checked-in vectors: the
// canonical bytes, both signatures, and that each verifies only with the key
// that made it.
func TestVectorLifecycle(t *testing.T) {
	got := buildLifecycleVectors(t)
	if *updateLifecycle {
		if err := os.WriteFile(lifecycleVectorsPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(lifecycleVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the code no longer produces %s:\n got  %s\n want %s", lifecycleVectorsPath, got, want)
	}
	var v lifecycleVectors
	if err := json.Unmarshal(want, &v); err != nil {
		t.Fatal(err)
	}
	_, k := loadVectors(t)
	newSig, err := crypto.ParseSigningKey(v.NewKeys.AgentSigningSeed)
	if err != nil {
		t.Fatal(err)
	}
	// The canonical forms are fixed text, independent of this code.
	wantRenew := `{"action":"agent.renew","payload":{"nonce":"` + v.Renew.Request.Nonce + `"},"protocol_version":"2026-02-1","timestamp":1771465000,"workspace_id":"T0123ABCD"}`
	if v.Renew.Canonical != wantRenew {
		t.Fatalf("renew canonical:\n got  %s\n want %s", v.Renew.Canonical, wantRenew)
	}
	rk := v.Rekey.Request
	wantRekey := `{"action":"agent.rekey","payload":{"nonce":"` + rk.Nonce + `","server_pubkey":"` + rk.ServerPubkey +
		`","server_signing_pubkey":"` + rk.ServerSigningPubkey + `"},"protocol_version":"2026-02-1","timestamp":1771465000,"workspace_id":"T0123ABCD"}`
	if v.Rekey.Canonical != wantRekey {
		t.Fatalf("rekey canonical:\n got  %s\n want %s", v.Rekey.Canonical, wantRekey)
	}
	cases := []struct {
		name string
		key  crypto.SigningPublicKey
		msg  string
		sig  string
		want bool
	}{
		{"renew by the agent key", k.agentSigning.Public(), v.Renew.Canonical, v.Renew.Request.Signature, true},
		{"renew by another key", newSig.Public(), v.Renew.Canonical, v.Renew.Request.Signature, false},
		{"rekey by the current key", k.agentSigning.Public(), v.Rekey.Canonical, rk.Signature, true},
		{"rekey proof by the new key", newSig.Public(), v.Rekey.Canonical, rk.NewKeySignature, true},
		{"rekey proof is not the current key's", k.agentSigning.Public(), v.Rekey.Canonical, rk.NewKeySignature, false},
		{"rekey signature over the renew bytes", k.agentSigning.Public(), v.Renew.Canonical, rk.Signature, false},
	}
	for _, c := range cases {
		if got := VerifySignature(c.key, []byte(c.msg), c.sig); got != c.want {
			t.Errorf("%s: verify = %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := rk.Validate(); err != nil {
		t.Errorf("vector rekey request invalid: %v", err)
	}
	if err := v.Renew.Request.Validate(); err != nil {
		t.Errorf("vector renew request invalid: %v", err)
	}
}

func TestLifecycleValidate(t *testing.T) {
	t.Parallel()
	v, _ := loadVectors(t)
	good := func() RekeyRequest {
		return RekeyRequest{ServerPubkey: v.Keys.AgentBoxPublicKey, ServerSigningPubkey: v.Keys.AgentSigningPublicKey,
			Nonce: EncodeSignature(make([]byte, crypto.NonceSize))}
	}
	for _, c := range []struct {
		name string
		edit func(*RekeyRequest)
		want string
	}{
		{"valid", func(*RekeyRequest) {}, ""},
		{"box key missing", func(r *RekeyRequest) { r.ServerPubkey = "" }, "invalid server_pubkey"},
		{"box key short", func(r *RekeyRequest) { r.ServerPubkey = EncodeSignature(make([]byte, 31)) }, "invalid server_pubkey"},
		{"box key low order", func(r *RekeyRequest) { r.ServerPubkey = EncodeSignature(make([]byte, 32)) }, "low-order"},
		{"signing key not base64", func(r *RekeyRequest) { r.ServerSigningPubkey = "!!" }, "invalid server_signing_pubkey"},
		{"nonce short", func(r *RekeyRequest) { r.Nonce = EncodeSignature(make([]byte, 23)) }, "invalid nonce"},
		{"nonce url alphabet", func(r *RekeyRequest) { r.Nonce = strings.Repeat("_", 32) }, "invalid nonce"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := good()
			c.edit(&r)
			_, err := r.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate = %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, c.want)
			}
			rn := RenewRequest{Nonce: r.Nonce}
			if nerr := rn.Validate(); (nerr != nil) != strings.Contains(c.want, "nonce") {
				t.Fatalf("renew Validate(%q) = %v", r.Nonce, nerr)
			}
		})
	}
}

// FuzzRenewRequest feeds arbitrary bodies to the renew parser: it must
// never panic, an accepted nonce is exactly 24 bytes, and the signed bytes
// are a pure function of the request.
func FuzzRenewRequest(f *testing.F) {
	f.Add([]byte(`{"org_id":"T1","nonce":"ERERERERERERERERERERERERERERERER","timestamp":1,"signature":"x"}`))
	f.Add([]byte(`{"nonce":"\u0000"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RenewRequest
		if json.Unmarshal(data, &r) != nil {
			return
		}
		if r.Validate() != nil {
			return
		}
		if len(r.Nonce) != 32 {
			t.Fatalf("accepted nonce %q", r.Nonce)
		}
		a := RenewSigningBytes(r.WorkspaceID, r.Timestamp, r.Nonce)
		if !bytes.Equal(a, RenewSigningBytes(r.WorkspaceID, r.Timestamp, r.Nonce)) {
			t.Fatal("signing bytes not deterministic")
		}
	})
}

// FuzzRekeyRequest feeds arbitrary bodies to the rekey parser: it must
// never panic, accepted keys round-trip to the request's strings, and a
// low-order box key is never accepted.
func FuzzRekeyRequest(f *testing.F) {
	raw, err := os.ReadFile(lifecycleVectorsPath)
	if err != nil {
		f.Fatal(err)
	}
	var v lifecycleVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		f.Fatal(err)
	}
	good, _ := json.Marshal(v.Rekey.Request)
	f.Add(good)
	f.Add([]byte(`{"server_pubkey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","server_signing_pubkey":"","nonce":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RekeyRequest
		if json.Unmarshal(data, &r) != nil {
			return
		}
		k, err := r.Validate()
		if err != nil {
			if k != (RekeyKeys{}) {
				t.Fatal("error with keys")
			}
			return
		}
		if k.Box.String() != r.ServerPubkey || k.Signing.String() != r.ServerSigningPubkey {
			t.Fatalf("keys do not round-trip: %+v", r)
		}
		if crypto.ValidateBoxPublicKey(k.Box) != nil {
			t.Fatal("accepted a low-order box key")
		}
		_ = RekeySigningBytes(r.WorkspaceID, r.Timestamp, r.ServerPubkey, r.ServerSigningPubkey, r.Nonce)
	})
}

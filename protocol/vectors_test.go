package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
)

type vectorFile struct {
	ProtocolVersion string `json:"protocol_version"`
	Keys            struct {
		AgentBoxPrivateKey     string `json:"agent_box_private_key"`
		AgentBoxPublicKey      string `json:"agent_box_public_key"`
		AgentSigningSeed       string `json:"agent_signing_seed"`
		AgentSigningPublicKey  string `json:"agent_signing_public_key"`
		BrokerBoxPrivateKey    string `json:"broker_box_private_key"`
		BrokerBoxPublicKey     string `json:"broker_box_public_key"`
		BrokerSigningSeed      string `json:"broker_signing_seed"`
		BrokerSigningPublicKey string `json:"broker_signing_public_key"`
	} `json:"keys"`
	StableStringify []struct {
		Input     json.RawMessage `json:"input"`
		Canonical string          `json:"canonical"`
	} `json:"stable_stringify"`
	InboundEnvelope struct {
		Envelope        InboxMessage `json:"envelope"`
		Canonical       string       `json:"canonical"`
		SealedPlaintext string       `json:"sealed_plaintext"`
	} `json:"inbound_envelope"`
	InboxPull struct {
		Request   PullRequest `json:"request"`
		Canonical string      `json:"canonical"`
	} `json:"inbox_pull"`
	InboxAck struct {
		Request   AckRequest `json:"request"`
		Canonical string     `json:"canonical"`
	} `json:"inbox_ack"`
	SendChatPostMessage sendVector `json:"send_chat_post_message"`
	SendReactionsAdd    sendVector `json:"send_reactions_add"`
	Negative            struct {
		SealedToOtherKey         string `json:"sealed_to_other_key"`
		EnvelopeSignedByAgentKey string `json:"envelope_signed_by_agent_key"`
	} `json:"negative"`
}

type sendVector struct {
	Request       SendRequest     `json:"request"`
	PlaintextBody json.RawMessage `json:"plaintext_body"`
	Canonical     string          `json:"canonical"`
}

type vectorKeys struct {
	agentBox, brokerBox         *crypto.BoxKeyPair
	agentSigning, brokerSigning *crypto.SigningKey
}

func loadVectors(t testing.TB) (*vectorFile, vectorKeys) {
	t.Helper()
	raw, err := os.ReadFile("testdata/protocol-2026-02-1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	var k vectorKeys
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	k.agentBox, err = crypto.ParseBoxKeyPair(v.Keys.AgentBoxPrivateKey)
	must(err)
	k.brokerBox, err = crypto.ParseBoxKeyPair(v.Keys.BrokerBoxPrivateKey)
	must(err)
	k.agentSigning, err = crypto.ParseSigningKey(v.Keys.AgentSigningSeed)
	must(err)
	k.brokerSigning, err = crypto.ParseSigningKey(v.Keys.BrokerSigningSeed)
	must(err)
	return &v, k
}

func TestVectorKeysDerive(t *testing.T) {
	v, k := loadVectors(t)
	for _, c := range []struct{ name, got, want string }{
		{"agent box public", k.agentBox.Public.String(), v.Keys.AgentBoxPublicKey},
		{"broker box public", k.brokerBox.Public.String(), v.Keys.BrokerBoxPublicKey},
		{"agent signing public", k.agentSigning.Public().String(), v.Keys.AgentSigningPublicKey},
		{"broker signing public", k.brokerSigning.Public().String(), v.Keys.BrokerSigningPublicKey},
		{"agent seed round trip", k.agentSigning.SeedString(), v.Keys.AgentSigningSeed},
		{"broker box private round trip", k.brokerBox.PrivateString(), v.Keys.BrokerBoxPrivateKey},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
		}
	}
	if v.ProtocolVersion != Version {
		t.Errorf("vector protocol version %q, package Version %q", v.ProtocolVersion, Version)
	}
}

func TestVectorStableStringify(t *testing.T) {
	v, _ := loadVectors(t)
	if len(v.StableStringify) == 0 {
		t.Fatal("no stable_stringify vectors")
	}
	for i, c := range v.StableStringify {
		dec := json.NewDecoder(bytes.NewReader(c.Input))
		dec.UseNumber()
		var in any
		if err := dec.Decode(&in); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got, err := Stable(in)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if string(got) != c.Canonical {
			t.Errorf("case %d:\n got  %q\n want %q", i, got, c.Canonical)
		}
	}
}

func TestVectorInboundEnvelope(t *testing.T) {
	v, k := loadVectors(t)
	e := v.InboundEnvelope
	if got := string(EnvelopeSigningBytes(e.Envelope.OrgID, e.Envelope.BrokerTimestamp, e.Envelope.Encrypted)); got != e.Canonical {
		t.Fatalf("canonical:\n got  %q\n want %q", got, e.Canonical)
	}
	sig := EncodeSignature(k.brokerSigning.Sign([]byte(e.Canonical)))
	if sig != e.Envelope.BrokerSignature {
		t.Fatalf("signature: got %s, want %s", sig, e.Envelope.BrokerSignature)
	}
	env, pt, err := OpenEnvelope(e.Envelope, k.brokerSigning.Public(), k.agentBox)
	if err != nil {
		t.Fatalf("OpenEnvelope: %v", err)
	}
	if string(pt) != e.SealedPlaintext {
		t.Fatalf("plaintext:\n got  %q\n want %q", pt, e.SealedPlaintext)
	}
	if env.Source != SourceSlack || env.Type != TypeEventCallback || env.BrokerTimestamp != e.Envelope.BrokerTimestamp {
		t.Fatalf("envelope fields: %+v", env)
	}
}

func TestVectorPullAndAck(t *testing.T) {
	v, k := loadVectors(t)
	p := v.InboxPull.Request
	maxM, wait, err := p.Limits()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(PullSigningBytes(p.WorkspaceID, p.Timestamp, maxM, wait)); got != v.InboxPull.Canonical {
		t.Fatalf("pull canonical:\n got  %q\n want %q", got, v.InboxPull.Canonical)
	}
	if got := EncodeSignature(k.agentSigning.Sign([]byte(v.InboxPull.Canonical))); got != p.Signature {
		t.Fatalf("pull signature: got %s, want %s", got, p.Signature)
	}
	if !VerifySignature(k.agentSigning.Public(), PullSigningBytes(p.WorkspaceID, p.Timestamp, maxM, wait), p.Signature) {
		t.Fatal("pull signature does not verify")
	}
	a := v.InboxAck.Request
	if got := string(AckSigningBytes(a.WorkspaceID, a.Timestamp, a.MessageIDs)); got != v.InboxAck.Canonical {
		t.Fatalf("ack canonical:\n got  %q\n want %q", got, v.InboxAck.Canonical)
	}
	if got := EncodeSignature(k.agentSigning.Sign([]byte(v.InboxAck.Canonical))); got != a.Signature {
		t.Fatalf("ack signature: got %s, want %s", got, a.Signature)
	}
}

func TestVectorSend(t *testing.T) {
	v, k := loadVectors(t)
	for name, s := range map[string]sendVector{"chat.postMessage": v.SendChatPostMessage, "reactions.add": v.SendReactionsAdd} {
		t.Run(name, func(t *testing.T) {
			r := s.Request
			if r.Action != name {
				t.Fatalf("action %q", r.Action)
			}
			canon := SendSigningBytes(r.WorkspaceID, r.Action, r.Timestamp, r.EncryptedBody, r.Nonce, r.Routing)
			if string(canon) != s.Canonical {
				t.Fatalf("canonical:\n got  %q\n want %q", canon, s.Canonical)
			}
			if got := EncodeSignature(k.agentSigning.Sign(canon)); got != r.Signature {
				t.Fatalf("signature: got %s, want %s", got, r.Signature)
			}
			ct, _ := base64.StdEncoding.DecodeString(r.EncryptedBody)
			nb, _ := base64.StdEncoding.DecodeString(r.Nonce)
			var nonce [crypto.NonceSize]byte
			copy(nonce[:], nb)
			// Broker side, precomputed and plain.
			pt, err := k.brokerBox.Precompute(k.agentBox.Public).Open(ct, &nonce)
			if err != nil {
				t.Fatalf("open (precomputed): %v", err)
			}
			pt2, err := k.brokerBox.Open(ct, &nonce, k.agentBox.Public)
			if err != nil || !bytes.Equal(pt, pt2) {
				t.Fatalf("open (plain): %v", err)
			}
			var got, want any
			if err := json.Unmarshal(pt, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(s.PlaintextBody, &want); err != nil {
				t.Fatal(err)
			}
			gs, _ := Stable(got)
			ws, _ := Stable(want)
			if !bytes.Equal(gs, ws) {
				t.Fatalf("plaintext %s, want %s", pt, s.PlaintextBody)
			}
			// Agent side: sealing the same plaintext with the same nonce gives
			// the vector's ciphertext byte for byte.
			again := k.agentBox.Precompute(k.brokerBox.Public).SealWithNonce(pt, &nonce)
			if !bytes.Equal(again, ct) {
				t.Fatal("re-sealing with the vector nonce does not reproduce the ciphertext")
			}
		})
	}
}

func TestVectorNegative(t *testing.T) {
	v, k := loadVectors(t)
	sealed, err := base64.StdEncoding.DecodeString(v.Negative.SealedToOtherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.agentBox.OpenAnonymous(sealed); err == nil {
		t.Fatal("a box sealed to another key opened")
	}
	e := v.InboundEnvelope.Envelope
	e.BrokerSignature = v.Negative.EnvelopeSignedByAgentKey
	if !VerifySignature(k.agentSigning.Public(), EnvelopeSigningBytes(e.OrgID, e.BrokerTimestamp, e.Encrypted), e.BrokerSignature) {
		t.Fatal("negative vector is not an agent-key signature of the envelope; vector file changed?")
	}
	if _, _, err := OpenEnvelope(e, k.brokerSigning.Public(), k.agentBox); err != ErrEnvelopeSignature {
		t.Fatalf("envelope signed by the agent key: got %v, want ErrEnvelopeSignature", err)
	}
	// The envelope carrying a box sealed to another key, correctly signed by
	// the broker, must verify but not open.
	e = v.InboundEnvelope.Envelope
	e.Encrypted = v.Negative.SealedToOtherKey
	e.BrokerSignature = EncodeSignature(k.brokerSigning.Sign(EnvelopeSigningBytes(e.OrgID, e.BrokerTimestamp, e.Encrypted)))
	if _, _, err := OpenEnvelope(e, k.brokerSigning.Public(), k.agentBox); err != ErrEnvelopeOpen {
		t.Fatalf("box sealed to another key: got %v, want ErrEnvelopeOpen", err)
	}
}

// TestEnvelopeTamper flips every byte of a valid envelope's signed fields and
// checks that OpenEnvelope refuses each variant.
func TestEnvelopeTamper(t *testing.T) {
	v, k := loadVectors(t)
	orig := v.InboundEnvelope.Envelope
	sealed, _ := base64.StdEncoding.DecodeString(orig.Encrypted)
	for i := range sealed {
		b := append([]byte(nil), sealed...)
		b[i] ^= 0x01
		m := orig
		m.Encrypted = base64.StdEncoding.EncodeToString(b)
		if _, _, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox); err == nil {
			t.Fatalf("flipped sealed byte %d accepted", i)
		}
		// Even re-signed by the broker, the box itself must not open.
		m.BrokerSignature = EncodeSignature(k.brokerSigning.Sign(EnvelopeSigningBytes(m.OrgID, m.BrokerTimestamp, m.Encrypted)))
		if _, _, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox); err != ErrEnvelopeOpen {
			t.Fatalf("flipped sealed byte %d, re-signed: got %v", i, err)
		}
	}
	sig, _ := base64.StdEncoding.DecodeString(orig.BrokerSignature)
	for i := range sig {
		b := append([]byte(nil), sig...)
		b[i] ^= 0x80
		m := orig
		m.BrokerSignature = base64.StdEncoding.EncodeToString(b)
		if _, _, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox); err != ErrEnvelopeSignature {
			t.Fatalf("flipped signature byte %d: got %v", i, err)
		}
	}
	for _, mut := range []func(*InboxMessage){
		func(m *InboxMessage) { m.OrgID = "T0123ABCE" },
		func(m *InboxMessage) { m.BrokerTimestamp++ },
	} {
		m := orig
		mut(&m)
		if _, _, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox); err != ErrEnvelopeSignature {
			t.Fatalf("changed signed field accepted: %v", err)
		}
	}
}

func TestSealEnvelopeRoundTrip(t *testing.T) {
	_, k := loadVectors(t)
	pt := []byte(`{"source":"slack","type":"block_actions","broker_timestamp":1771465000,"payload":{"a":1}}`)
	m, err := SealEnvelope(pt, "T1", "m-9", 1771465000, k.agentBox.Public, k.brokerSigning)
	if err != nil {
		t.Fatal(err)
	}
	env, got, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) || env.Type != "block_actions" || m.WorkspaceID != "T1" {
		t.Fatalf("round trip: %s %+v", got, env)
	}
	// A mismatched inner timestamp is malformed even though the signature holds.
	m2, _ := SealEnvelope(pt, "T1", "m-9", 1771465001, k.agentBox.Public, k.brokerSigning)
	if _, _, err := OpenEnvelope(m2, k.brokerSigning.Public(), k.agentBox); err == nil {
		t.Fatal("inner/outer broker_timestamp mismatch accepted")
	}
}

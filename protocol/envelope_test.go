package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/crypto"
)

// legacyBuildEnvelope, legacyBuildHeldEnvelope and legacyAppendStored are
// the builders the broker had before the envelope moved here
// (broker/ingress.go buildEnvelope, broker/held_ingress.go
// buildHeldEnvelope, broker/fanout.go appendStoredMessage), copied verbatim
// as the reference the new code must reproduce byte for byte.
func legacyBuildEnvelope(source, typ string, ts int64, payload []byte) []byte {
	src, _ := json.Marshal(source)
	ty, _ := json.Marshal(typ)
	b := make([]byte, 0, len(payload)+len(src)+len(ty)+64)
	b = append(b, `{"source":`...)
	b = append(b, src...)
	b = append(b, `,"type":`...)
	b = append(b, ty...)
	b = append(b, `,"broker_timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func legacyBuildHeldEnvelope(source, typ string, ts, respondBy int64, payload []byte) []byte {
	src, _ := json.Marshal(source)
	ty, _ := json.Marshal(typ)
	b := make([]byte, 0, len(payload)+len(src)+len(ty)+128)
	b = append(b, `{"source":`...)
	b = append(b, src...)
	b = append(b, `,"type":`...)
	b = append(b, ty...)
	b = append(b, `,"broker_timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"response_expected":true,"respond_by":`...)
	b = strconv.AppendInt(b, respondBy, 10)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	return append(b, '}')
}

func legacyAppendStored(b, orgJSON []byte, msg InboxMessage) []byte {
	b = append(b, `{"o":`...)
	b = append(b, orgJSON...)
	b = append(b, `,"e":"`...)
	b = append(b, msg.Encrypted...)
	b = append(b, `","t":`...)
	b = strconv.AppendInt(b, msg.BrokerTimestamp, 10)
	b = append(b, `,"s":"`...)
	b = append(b, msg.BrokerSignature...)
	return append(b, `"}`...)
}

// legacyStoredMessage is the broker's former storedMessage, which the drop
// notice path encoded with json.Marshal.
type legacyStoredMessage struct {
	OrgID           string `json:"o"`
	Encrypted       string `json:"e"`
	BrokerTimestamp int64  `json:"t"`
	BrokerSignature string `json:"s"`
}

// envelopeStrings are sources and types, from the constants to what a
// hostile Slack payload type could hold: every class encoding/json escapes.
var envelopeStrings = []string{
	SourceSlack, SourceSystem, TypeEventCallback, TypeSlashCommand, TypeEventsDropped,
	TypeAppUninstalled, TypeTokensRevoked, TypeAppRateLimited, "block_actions", "view_submission",
	"", "a", `quo"te`, `back\slash`, "<script>", "a&b", "tab\there", "nl\n", "\x00\x1f\x7f",
	"é unicode ☃", "line\u2028sep\u2029", "bad\xffutf8", "\xed\xa0\x80", strings.Repeat("x", 300),
}

var envelopePayloads = [][]byte{
	[]byte(`{}`),
	[]byte(`{"type":"event_callback","event":{"type":"app_mention","text":"<@UBOT> hi & bye"}}`),
	[]byte(`{ "spaced" : [ 1 , 2 ] }`),
	[]byte(`{"u":"\u2028 \ud83d\ude00 é"}`),
	[]byte(`{"command":"/deploy","text":"prod <now>"}`),
	[]byte(`null`),
	[]byte(`"string payload"`),
	{}, // empty: embedded as is, like before
}

var envelopeTimestamps = []int64{0, 1, -1, 1771465000, 1<<63 - 1, -1 << 63}

// TestEnvelopeMatchesLegacyBuilder compares the new builder with the old
// one for every combination of the tables above, plain and held.
func TestEnvelopeMatchesLegacyBuilder(t *testing.T) {
	t.Parallel()
	n := 0
	for _, src := range envelopeStrings {
		for _, typ := range envelopeStrings {
			for _, p := range envelopePayloads {
				for _, ts := range envelopeTimestamps {
					e := Envelope{Source: src, Type: typ, BrokerTimestamp: ts, Payload: p}
					if got, want := e.Plaintext(), legacyBuildEnvelope(src, typ, ts, p); !bytes.Equal(got, want) {
						t.Fatalf("plain %q/%q/%d/%q:\n got  %q\n want %q", src, typ, ts, p, got, want)
					}
					e.ResponseExpected, e.RespondBy = true, ts/3+1
					if got, want := e.Plaintext(), legacyBuildHeldEnvelope(src, typ, ts, e.RespondBy, p); !bytes.Equal(got, want) {
						t.Fatalf("held %q/%q/%d/%q:\n got  %q\n want %q", src, typ, ts, p, got, want)
					}
					// AppendJSON appends: a prefix stays.
					if got := e.AppendJSON([]byte("pre")); !bytes.HasPrefix(got, []byte("pre{")) {
						t.Fatalf("AppendJSON dropped the prefix: %q", got)
					}
					n += 2
				}
			}
		}
	}
	if n < 1000 {
		t.Fatalf("only %d cases compared", n)
	}
}

// TestEnvelopeJSONRoundTrip checks that what the builder writes parses back
// into the same envelope (for valid UTF-8 strings and object payloads).
func TestEnvelopeJSONRoundTrip(t *testing.T) {
	t.Parallel()
	for _, held := range []bool{false, true} {
		in := Envelope{Source: SourceSystem, Type: `ty<"pe>`, BrokerTimestamp: 1771465000,
			Payload: json.RawMessage(`{"count":1}`)}
		if held {
			in.ResponseExpected, in.RespondBy = true, 1771465002500
		}
		var out Envelope
		if err := json.Unmarshal(in.Plaintext(), &out); err != nil {
			t.Fatalf("held=%v: %v", held, err)
		}
		if out.Source != in.Source || out.Type != in.Type || out.BrokerTimestamp != in.BrokerTimestamp ||
			out.ResponseExpected != in.ResponseExpected || out.RespondBy != in.RespondBy || !bytes.Equal(out.Payload, in.Payload) {
			t.Fatalf("held=%v: round trip %+v, want %+v", held, out, in)
		}
	}
}

// TestVectorEnvelopePlaintext rebuilds the vector's sealed plaintext from
// its parts with the builder the broker uses.
func TestVectorEnvelopePlaintext(t *testing.T) {
	t.Parallel()
	v, _ := loadVectors(t)
	var e Envelope
	if err := json.Unmarshal([]byte(v.InboundEnvelope.SealedPlaintext), &e); err != nil {
		t.Fatal(err)
	}
	if got := string(e.Plaintext()); got != v.InboundEnvelope.SealedPlaintext {
		t.Fatalf("plaintext:\n got  %s\n want %s", got, v.InboundEnvelope.SealedPlaintext)
	}
}

// storedInputs are inbox messages as the broker signs them, plus ids
// ValidateID would refuse (the encoding must still match encoding/json).
func storedInputs(t *testing.T) []InboxMessage {
	v, _ := loadVectors(t)
	out := []InboxMessage{v.InboundEnvelope.Envelope,
		{OrgID: "T0ABC123", Encrypted: "q83vEjRWeJA+/w==", BrokerTimestamp: 1771465000, BrokerSignature: "c2lnbmF0dXJl+/8="},
		{OrgID: "E0ENT.1:x-y_z", Encrypted: "AA=="},
		{OrgID: "T1", BrokerTimestamp: -5, BrokerSignature: "AAAA"}}
	for _, org := range []string{"T0123ABCD", "E1:x.y-z", "", `o"<&>`, "é", "bad\xff"} {
		for _, ts := range envelopeTimestamps {
			out = append(out, InboxMessage{OrgID: org, Encrypted: "AAAA+/==", BrokerTimestamp: ts, BrokerSignature: "c2ln"})
		}
	}
	return out
}

// TestStoredMatchesLegacy: a message whose encrypted box and signature are
// canonical base64 (as the broker signs them) is stored in the binary form,
// smaller than the JSON, and reads back exactly as the JSON that earlier
// versions stored (json.Marshal for drop notices, fanOut's appender) reads;
// any other message is stored as that JSON, byte for byte.
func TestStoredMatchesLegacy(t *testing.T) {
	t.Parallel()
	binaries := 0
	for _, m := range storedInputs(t) {
		got := Stored(&m)
		want, err := json.Marshal(legacyStoredMessage{m.OrgID, m.Encrypted, m.BrokerTimestamp, m.BrokerSignature})
		if err != nil {
			t.Fatal(err)
		}
		orgJSON, _ := json.Marshal(m.OrgID)
		if legacy := legacyAppendStored(nil, orgJSON, m); !bytes.Equal(want, legacy) {
			t.Fatalf("the former encoders differ for %+v:\n %s\n %s", m, want, legacy)
		}
		canonical := isCanonical(m.Encrypted) && isCanonical(m.BrokerSignature) && len(m.BrokerSignature) == 88
		switch {
		case canonical && (got[0] != storedV1 || len(got) >= len(want)):
			t.Fatalf("stored %+v: %d bytes, first %#x; want the binary form, smaller than the JSON (%d bytes)", m, len(got), got[0], len(want))
		case !canonical && !bytes.Equal(got, want):
			t.Fatalf("stored %+v:\n got  %s\n want %s", m, got, want)
		}
		if canonical {
			binaries++
		}
		fromBinary, err := ParseStored("m-1", got)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON, err := ParseStored("m-1", want)
		if err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(m.OrgID) && fromBinary != fromJSON {
			t.Fatalf("%+v: the stored form reads as %+v, the JSON as %+v", m, fromBinary, fromJSON)
		}
	}
	if binaries == 0 {
		t.Fatal("no input took the binary form")
	}
}

// isCanonical reports whether s is what base64.StdEncoding.EncodeToString
// writes for some bytes.
func isCanonical(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && base64.StdEncoding.EncodeToString(b) == s
}

// TestParseStored checks the round trip and the refusals.
func TestParseStored(t *testing.T) {
	t.Parallel()
	for _, m := range storedInputs(t) {
		if !strings.Contains(m.OrgID, "\xff") {
			m.MessageID, m.WorkspaceID = "m-7", m.OrgID
			got, err := ParseStored("m-7", Stored(&m))
			if err != nil || got != m {
				t.Fatalf("round trip of %+v: %+v, %v", m, got, err)
			}
		}
	}
	for _, bad := range []string{``, `[]`, `{"o":1}`, `{"t":"x"}`, `not json`, `{"o":"T1"`,
		"\x01", "\x01\x05T1", "\x01\x02T1" + strings.Repeat("\x00", 8+63), "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
		if _, err := ParseStored("m", []byte(bad)); !errors.Is(err, ErrStoredMalformed) {
			t.Fatalf("ParseStored(%q): %v, want ErrStoredMalformed", bad, err)
		} else if strings.Contains(err.Error(), bad) && bad != "" {
			t.Fatalf("error %q quotes the body", err)
		}
	}
}

// TestOpenHeldEnvelope checks that the §8.2 fields come out of
// OpenEnvelope, and that a mistyped one is read as absent (as before the
// envelope parsed them) while a mistyped core field is malformed.
func TestOpenHeldEnvelope(t *testing.T) {
	t.Parallel()
	_, k := loadVectors(t)
	open := func(pt string) (*Envelope, error) {
		m, err := SealEnvelope([]byte(pt), "T1", "m-1", 1771465000, k.agentBox.Public, k.brokerSigning)
		if err != nil {
			t.Fatal(err)
		}
		env, p, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox)
		crypto.Wipe(p)
		return env, err
	}
	held := Envelope{Source: SourceSlack, Type: TypeSlashCommand, BrokerTimestamp: 1771465000,
		ResponseExpected: true, RespondBy: 1771465002500, Payload: json.RawMessage(`{"command":"/x"}`)}
	env, err := open(string(held.Plaintext()))
	if err != nil || !env.ResponseExpected || env.RespondBy != held.RespondBy || string(env.Payload) != `{"command":"/x"}` {
		t.Fatalf("held envelope: %+v, %v", env, err)
	}
	cases := []struct {
		pt        string
		malformed bool
	}{
		{`{"source":"slack","type":"t","broker_timestamp":1771465000,"response_expected":"yes","payload":{}}`, false},
		{`{"source":"slack","type":"t","broker_timestamp":1771465000,"respond_by":"soon","payload":{}}`, false},
		{`{"source":"slack","type":"t","broker_timestamp":"1771465000","payload":{}}`, true},
		{`{"source":7,"type":"t","broker_timestamp":1771465000,"payload":{}}`, true},
	}
	for _, tc := range cases {
		env, err := open(tc.pt)
		switch {
		case tc.malformed && !errors.Is(err, ErrEnvelopeMalformed):
			t.Errorf("%s: %v, want ErrEnvelopeMalformed", tc.pt, err)
		case !tc.malformed && (err != nil || env.ResponseExpected || env.RespondBy != 0):
			t.Errorf("%s: %+v, %v, want an envelope without §8.2 fields", tc.pt, env, err)
		}
	}
}

// FuzzParseStored: ParseStored never panics, and what it accepts encodes
// back (for valid UTF-8) to a body that parses to the same message.
func FuzzParseStored(f *testing.F) {
	f.Add([]byte(`{"o":"T1","e":"AAAA","t":1771465000,"s":"c2ln"}`))
	f.Add([]byte(`{"o":"<\u2028>","t":-1}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Add([]byte("\x01\x02T1" + strings.Repeat("\x00", 8+64) + "sealed"))
	f.Add([]byte("\x01\x00" + strings.Repeat("\xff", 8+64)))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseStored("m-1", body)
		if err != nil {
			if !errors.Is(err, ErrStoredMalformed) {
				t.Fatalf("error %v does not wrap ErrStoredMalformed", err)
			}
			return
		}
		again, err := ParseStored("m-1", Stored(&m))
		if err != nil || again != m {
			t.Fatalf("re-encoded %+v parses to %+v, %v", m, again, err)
		}
	})
}

// BenchmarkEnvelope measures building the plaintext of an ordinary event's
// envelope and the stored form of one copy, with the former builders as
// the baseline.
//
//	go test -run XXX -bench Envelope -benchmem ./protocol/
func BenchmarkEnvelope(b *testing.B) {
	payload := []byte(`{"token":"t","team_id":"T0BENCH1","api_app_id":"A1","type":"event_callback","event_id":"EvB1","event_time":1771465000,"event":{"type":"app_mention","user":"U1","text":"benchmark message body of ordinary length","ts":"1771465000.000100","channel":"C1"},"authorizations":[{"team_id":"T0BENCH1","is_bot":true,"is_enterprise_install":false}]}`)
	msg := InboxMessage{OrgID: "T0BENCH1", Encrypted: strings.Repeat("QUJD", 130), BrokerTimestamp: 1771465000,
		BrokerSignature: strings.Repeat("c2ln", 22)}
	b.Run("build/legacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = legacyBuildEnvelope(SourceSlack, TypeEventCallback, 1771465000, payload)
		}
	})
	b.Run("build/new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := Envelope{Source: SourceSlack, Type: TypeEventCallback, BrokerTimestamp: 1771465000, Payload: payload}
			_ = e.Plaintext()
		}
	})
	b.Run("stored/legacy", func(b *testing.B) {
		orgJSON, _ := json.Marshal(msg.OrgID) // once per event in fanOut, not per copy
		b.ReportAllocs()
		for b.Loop() {
			_ = legacyAppendStored(nil, orgJSON, msg)
		}
	})
	b.Run("stored/new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = Stored(&msg)
		}
	})
}

// TestSealEnvelopeStored checks that the stored form SealEnvelopeStored
// writes is, byte for byte, Stored / StoredJSON of the message it holds,
// and that the message opens and verifies like SealEnvelope's.
func TestSealEnvelopeStored(t *testing.T) {
	t.Parallel()
	broker, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte(`{"source":"slack","type":"event_callback","broker_timestamp":1771465000,"payload":{"a":1}}`)
	multi, err := crypto.NewMultiSealer()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		sealer  *crypto.MultiSealer
		org     string
		compact bool
	}{
		{"single json", nil, "T1", false},
		{"single binary", nil, "T1", true},
		{"multi json", multi, "E0ORG", false},
		{"multi binary", multi, "E0ORG", true},
		{"escaped org json", nil, "T<&>\u00e9", false},
		{"escaped org binary", nil, "T<&>\u00e9", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, err := SealEnvelopeStored(c.sealer, pt, c.org, 1771465000, agent.Public, broker, c.compact)
			if err != nil {
				t.Fatal(err)
			}
			if got := body[0] == storedV1; got != c.compact {
				t.Fatalf("binary form = %v, want %v", got, c.compact)
			}
			m, err := ParseStored("m1", body)
			if err != nil {
				t.Fatal(err)
			}
			want := StoredJSON(&m)
			if c.compact {
				want = Stored(&m)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("stored form\n got %q\nwant %q", body, want)
			}
			if m.OrgID != c.org || m.BrokerTimestamp != 1771465000 {
				t.Fatalf("message %+v", m)
			}
			_, got, err := OpenEnvelope(m, broker.Public(), agent)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("open: %q %v", got, err)
			}
		})
	}
}

// benchEnvelopePlaintext is the opened envelope of an ordinary Events API
// message (~1 KiB), as the broker seals it.
func benchEnvelopePlaintext() []byte {
	payload, _ := json.Marshal(map[string]any{
		"token": "t", "type": "event_callback", "team_id": "T0123ABCD", "api_app_id": "A0123ABCD", "event_id": "Ev0123ABCD",
		"event_time": 1771465000, "authorizations": []any{map[string]any{"team_id": "T0123ABCD", "is_bot": true}},
		"event": map[string]any{"type": "message", "channel": "C0123ABCD", "user": "U0123ABCD", "ts": "1771464999.000100",
			"text": strings.Repeat("hello world ", 50), "blocks": []any{}},
	})
	e := Envelope{Source: SourceSlack, Type: TypeEventCallback, BrokerTimestamp: 1771465000, Payload: payload}
	return e.Plaintext()
}

// BenchmarkOpenEnvelope measures OpenEnvelope on an ordinary event:
// signature check, box open and envelope decode.
//
//	go test -run XXX -bench OpenEnvelope -benchmem ./protocol/
func BenchmarkOpenEnvelope(b *testing.B) {
	_, k := loadVectors(b)
	m, err := SealEnvelope(benchEnvelopePlaintext(), "T0123ABCD", "m-1", 1771465000, k.agentBox.Public, k.brokerSigning)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, pt, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox)
		if err != nil {
			b.Fatal(err)
		}
		crypto.Wipe(pt)
	}
}

package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/jsonscan"
)

// legacyDecodeEnvelope is how OpenEnvelope decoded the opened envelope
// before decodeEnvelope: the reference decodeEnvelope must match.
func legacyDecodeEnvelope(pt []byte) (Envelope, bool) {
	var env Envelope
	if err := json.Unmarshal(pt, &env); err != nil && !legacyHeldFieldTypeError(err) {
		return Envelope{}, false
	}
	return env, true
}

func legacyHeldFieldTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && (te.Field == "response_expected" || te.Field == "respond_by")
}

// checkDecodeEnvelope decodes pt with decodeEnvelope and with the legacy
// decoder and fails on any difference: accept/reject, every field, and the
// payload not aliasing pt (the plaintext is wiped while the payload lives
// on). When the fast path alone accepts pt, json.Unmarshal must accept it
// without any error. It returns the decoded envelope and whether the fast
// path took it.
func checkDecodeEnvelope(t *testing.T, pt []byte) (Envelope, bool, bool) {
	t.Helper()
	want, wantOK := legacyDecodeEnvelope(pt)
	buf := bytes.Clone(pt)
	var got Envelope
	gotOK := decodeEnvelope(buf, &got)
	crypto.Wipe(buf)
	if gotOK != wantOK {
		t.Fatalf("%q: accepted %v, encoding/json %v", pt, gotOK, wantOK)
	}
	if gotOK && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v (payload %q)\nwant %+v (payload %q)", pt, got, got.Payload, want, want.Payload)
	}
	var fast Envelope
	fastOK := decodeEnvelopeFast(pt, &fast)
	if fastOK {
		var ref Envelope
		if err := json.Unmarshal(pt, &ref); err != nil {
			t.Fatalf("%q: fast path accepted what encoding/json refuses: %v", pt, err)
		}
		if !reflect.DeepEqual(fast, ref) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", pt, fast, ref)
		}
	}
	return got, gotOK, fastOK
}

// TestDecodeEnvelope covers the edge cases of the envelope decoder against
// encoding/json, and that what brokers write takes the fast path.
func TestDecodeEnvelope(t *testing.T) {
	t.Parallel()
	held := Envelope{Source: SourceSlack, Type: TypeSlashCommand, BrokerTimestamp: 1771465000,
		ResponseExpected: true, RespondBy: 1771465002500, Payload: json.RawMessage(`{"command":"/x"}`)}
	plain := Envelope{Source: SourceSystem, Type: TypeEventsDropped, BrokerTimestamp: -5, Payload: json.RawMessage(`[1, {"a":"\u00e9"}]`)}
	const base = `"source":"slack","type":"t","broker_timestamp":7`
	tests := []struct {
		name string
		pt   string
		ok   bool // accepted as JSON
		fast bool // taken by the fast path
		want *Envelope
	}{
		{"held", string(held.Plaintext()), true, true, &held},
		{"plain", string(plain.Plaintext()), true, true, &plain},
		{"white space", " {\n\t\"source\" : \"slack\" , \"type\":\"t\",\"broker_timestamp\": 7 ,\"payload\" : {\"a\" : 1} }\r\n", true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, Payload: json.RawMessage(`{"a" : 1}`)}},
		{"no payload", `{` + base + `}`, true, true, &Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7}},
		{"null payload", `{` + base + `,"payload":null}`, true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, Payload: json.RawMessage(`null`)}},
		{"duplicates take the last", `{"source":"a","type":"x","broker_timestamp":1,"payload":[1],` + base + `,"payload":"p","respond_by":1,"respond_by":2}`, true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, RespondBy: 2, Payload: json.RawMessage(`"p"`)}},
		{"null keeps the earlier value", `{` + base + `,"source":null,"broker_timestamp":null,"response_expected":true,"response_expected":null}`, true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, ResponseExpected: true}},
		{"keys ignore ASCII case", `{"SOURCE":"slack","Type":"t","Broker_Timestamp":7,"PayLoad":1}`, true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, Payload: json.RawMessage(`1`)}},
		{"unknown fields", `{` + base + `,"extra":{"deep":[true,null,"\ud83d\ude00"]},"n":-1.5e+3}`, true, true,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7}},
		{"minus zero", `{` + base + `,"respond_by":-0}`, true, true, &Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7}},
		{"escaped source", `{"source":"sl\u0061ck\n","type":"t","broker_timestamp":7}`, true, false,
			&Envelope{Source: "slack\n", Type: "t", BrokerTimestamp: 7}},
		{"non-ASCII type", `{"source":"s","type":"é","broker_timestamp":7}`, true, false, &Envelope{Source: "s", Type: "é", BrokerTimestamp: 7}},
		{"invalid UTF-8 type", "{\"source\":\"s\",\"type\":\"\xff\",\"broker_timestamp\":7}", true, false,
			&Envelope{Source: "s", Type: "\ufffd", BrokerTimestamp: 7}},
		{"escaped key", `{"sourc\u0065":"s","type":"t"}`, true, false, &Envelope{Source: "s", Type: "t"}},
		{"key folding beyond ASCII", `{"ſource":"s","type":"t"}`, true, false, &Envelope{Source: "s", Type: "t"}},
		{"19-digit timestamp", `{"source":"s","type":"t","broker_timestamp":1234567890123456789}`, true, false,
			&Envelope{Source: "s", Type: "t", BrokerTimestamp: 1234567890123456789}},
		{"mistyped response_expected", `{` + base + `,"response_expected":"yes","payload":{}}`, true, false,
			&Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7, Payload: json.RawMessage(`{}`)}},
		{"fractional respond_by", `{` + base + `,"respond_by":1.0}`, true, false, &Envelope{Source: "slack", Type: "t", BrokerTimestamp: 7}},
		{"mistyped held field first", `{"respond_by":[],"source":5,"type":"t"}`, true, false, &Envelope{Type: "t"}},
		{"mistyped core field first", `{"source":5,"respond_by":[],"type":"t"}`, false, false, nil},
		{"fractional timestamp", `{"source":"s","type":"t","broker_timestamp":7.0}`, false, false, nil},
		{"timestamp overflow", `{"source":"s","type":"t","broker_timestamp":9223372036854775808}`, false, false, nil},
		{"string timestamp", `{"source":"s","type":"t","broker_timestamp":"7"}`, false, false, nil},
		{"null document", `null`, true, false, &Envelope{}},
		{"array", `[]`, false, false, nil},
		{"trailing data", `{` + base + `}{}`, false, false, nil},
		{"truncated", `{` + base, false, false, nil},
		{"bad payload", `{` + base + `,"payload":{"a":}}`, false, false, nil},
		{"bad value elsewhere", `{` + base + `,"x":[1,]}`, false, false, nil},
		{"too deep", `{` + base + `,"payload":` + strings.Repeat("[", jsonscan.MaxDepth) + strings.Repeat("]", jsonscan.MaxDepth) + `}`, false, false, nil},
		{"empty", ``, false, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok, fast := checkDecodeEnvelope(t, []byte(tc.pt))
			if ok != tc.ok || fast != tc.fast {
				t.Fatalf("accepted %v, fast %v; want %v, %v", ok, fast, tc.ok, tc.fast)
			}
			if tc.want != nil && !reflect.DeepEqual(got, *tc.want) {
				t.Fatalf("got %+v (payload %q), want %+v", got, got.Payload, *tc.want)
			}
		})
	}
}

// FuzzDecodeEnvelope compares decodeEnvelope with the legacy encoding/json
// decoder on arbitrary plaintext: accept/reject and every field.
func FuzzDecodeEnvelope(f *testing.F) {
	held := Envelope{Source: SourceSlack, Type: TypeSlashCommand, BrokerTimestamp: 1771465000,
		ResponseExpected: true, RespondBy: 1771465002500, Payload: json.RawMessage(`{"command":"/x"}`)}
	f.Add(held.Plaintext())
	for _, s := range []string{
		`{"source":"system","type":"events_dropped","broker_timestamp":1771465000,"payload":{"count":1}}`,
		`{"source":"slack","type":"t","broker_timestamp":1771465000,"respond_by":"x","payload":{}}`,
		`{"SOURCE":"a","source":null,"payload":null,"payload":[1,"\u00e9"],"broker_timestamp":-0}`,
		`{"respond_by":1e3,"source":5}`, `{"ſource":"s","typ\u0065":"t"}`, ` null `, `[{}]`, `{"a":{"b":[1,2,{"c":true}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, pt []byte) {
		checkDecodeEnvelope(t, pt)
	})
}

// BenchmarkDecodeEnvelope measures decoding an ordinary event's opened
// envelope, json.Unmarshal (legacy) against decodeEnvelope, and the whole
// OpenEnvelope (signature check and box open included).
//
//	go test -run XXX -bench 'OpenEnvelope|DecodeEnvelope' -benchmem ./protocol/
func BenchmarkDecodeEnvelope(b *testing.B) {
	pt := benchEnvelopePlaintext()
	b.Run("legacy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := legacyDecodeEnvelope(pt); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var env Envelope
			if !decodeEnvelope(pt, &env) {
				b.Fatal("refused")
			}
		}
	})
}

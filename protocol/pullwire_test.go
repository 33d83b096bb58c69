package protocol

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// storedSamples are inbox messages whose stored forms the pull path reads.
var storedSamples = []InboxMessage{
	{OrgID: "T0ABC", Encrypted: "c2VhbGVkIGJveA==", BrokerTimestamp: 1771465000, BrokerSignature: "c2lnbmF0dXJl"},
	{OrgID: "E0ORG", Encrypted: "", BrokerTimestamp: 0, BrokerSignature: ""},
	{OrgID: "T0ABC", Encrypted: "a+b/c=", BrokerTimestamp: -42, BrokerSignature: "x"},
	{OrgID: "T<&>", Encrypted: "not base64 \"quoted\" \\ \u2028 é", BrokerTimestamp: 9223372036854775807, BrokerSignature: "s\x01"},
	{OrgID: "bad\xffutf8", Encrypted: "e", BrokerTimestamp: -9223372036854775808, BrokerSignature: "s"},
}

func TestParseStoredFastPathMatchesJSON(t *testing.T) {
	t.Parallel()
	type tc struct {
		name string
		body []byte
	}
	var cases []tc
	for _, m := range storedSamples {
		cases = append(cases, tc{"json " + m.OrgID, StoredJSON(&m)}, tc{"stored " + m.OrgID, Stored(&m)})
	}
	cases = append(cases,
		tc{"spaces", []byte(`{ "o":"T1","e":"e","t":1,"s":"s"}`)},
		tc{"other order", []byte(`{"e":"e","o":"T1","t":1,"s":"s"}`)},
		tc{"leading zero", []byte(`{"o":"T1","e":"e","t":01,"s":"s"}`)},
		tc{"minus zero", []byte(`{"o":"T1","e":"e","t":-0,"s":"s"}`)},
		tc{"exponent", []byte(`{"o":"T1","e":"e","t":1e3,"s":"s"}`)},
		tc{"overflow", []byte(`{"o":"T1","e":"e","t":92233720368547758070,"s":"s"}`)},
		tc{"trailing", []byte(`{"o":"T1","e":"e","t":1,"s":"s"}x`)},
		tc{"trailing space", []byte(`{"o":"T1","e":"e","t":1,"s":"s"} `)},
		tc{"escape", []byte(`{"o":"T\u0031","e":"e","t":1,"s":"s"}`)},
		tc{"literal lt", []byte(`{"o":"T<1","e":"e","t":1,"s":"s"}`)},
		tc{"unterminated", []byte(`{"o":"T1","e":"e","t":1,"s":"s`)},
		tc{"extra key", []byte(`{"o":"T1","e":"e","t":1,"s":"s","x":1}`)},
		tc{"empty", nil},
		tc{"not json", []byte(`nope`)},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			checkParseStored(t, c.body)
		})
	}
}

// checkParseStored fails unless ParseStored, fast path included, gives
// for body what encoding/json alone (parseStoredJSON) gives.
func checkParseStored(t *testing.T, body []byte) {
	t.Helper()
	if len(body) > 0 && body[0] == storedV1 {
		return // the binary form has tests of its own
	}
	want, wantErr := parseStoredJSON("m1", body)
	got, gotErr := ParseStored("m1", body)
	if (wantErr == nil) != (gotErr == nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseStored(%q) = %+v, %v; encoding/json = %+v, %v", body, got, gotErr, want, wantErr)
	}
	if _, fast := parseStoredJSONFast("m1", body); fast && wantErr != nil {
		t.Fatalf("fast path accepted %q, which encoding/json refuses", body)
	}
}

func TestStoredFastPathTaken(t *testing.T) {
	t.Parallel()
	for _, m := range storedSamples[:3] {
		body := StoredJSON(&m)
		if _, ok := parseStoredJSONFast("m1", body); !ok {
			t.Errorf("fast path not taken for %s", body)
		}
	}
}

func FuzzParseStoredFastPath(f *testing.F) {
	for _, m := range storedSamples {
		f.Add(StoredJSON(&m))
	}
	f.Add([]byte(`{"o":"T1","e":"e","t":-12,"s":"s"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkParseStored(t, body)
	})
}

func TestAppendPullResponseMatchesMarshal(t *testing.T) {
	t.Parallel()
	withIDs := func(ms []InboxMessage) []InboxMessage {
		out := make([]InboxMessage, len(ms))
		for i, m := range ms {
			m.MessageID, m.WorkspaceID = "msg-"+m.OrgID, m.OrgID
			out[i] = m
		}
		return out
	}
	cases := []struct {
		name string
		msgs []InboxMessage
	}{
		{"nil", nil},
		{"empty", []InboxMessage{}},
		{"one", withIDs(storedSamples[:1])},
		{"all", withIDs(storedSamples)},
		{"zero message", []InboxMessage{{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want, err := json.Marshal(PullResponse{OK: true, Messages: c.msgs})
			if err != nil {
				t.Fatal(err)
			}
			if got := AppendPullResponse([]byte("x"), c.msgs); !bytes.Equal(got, append([]byte("x"), want...)) {
				t.Fatalf("AppendPullResponse:\n got %s\nwant x%s", got, want)
			}
		})
	}
}

func FuzzAppendPullResponse(f *testing.F) {
	f.Add("m", "T1", "enc", int64(1), "sig")
	f.Add("<&>", "\xff", "\u2028", int64(-1), "\"\\")
	f.Fuzz(func(t *testing.T, id, org, enc string, ts int64, sig string) {
		msgs := []InboxMessage{{MessageID: id, OrgID: org, WorkspaceID: org, Encrypted: enc, BrokerTimestamp: ts, BrokerSignature: sig}}
		want, err := json.Marshal(PullResponse{OK: true, Messages: msgs})
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendPullResponse(nil, msgs); !bytes.Equal(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	})
}

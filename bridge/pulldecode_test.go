package bridge

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/protocol"
)

// pullAnswers are answers the broker writes, and shapes near them.
var pullAnswers = func() []string {
	msgs := []protocol.InboxMessage{
		{MessageID: "m-1", OrgID: "T1", WorkspaceID: "T1", Encrypted: strings.Repeat("QUJD", 400) + "+/==", BrokerTimestamp: 1771465000, BrokerSignature: "c2ln"},
		{MessageID: "m-2", OrgID: "T1", Encrypted: "eA==", BrokerTimestamp: -3, BrokerSignature: "c2ln"},
		{MessageID: "m-3", OrgID: "T2", WorkspaceID: "T2"},
	}
	full, _ := json.Marshal(protocol.PullResponse{OK: true, Messages: msgs})
	empty, _ := json.Marshal(protocol.PullResponse{OK: true})
	return []string{
		string(full) + "\n",
		string(empty) + "\n",
		`{"ok":true,"messages":[]}`,
		" {\n \"messages\" : [ { \"message_id\" : \"a\" , \"broker_timestamp\" : 0 } ] ,\t\"ok\" : true } \r\n",
		`{"ok":false,"messages":[{"message_id":"a"}]}`,
		`{"ok":true}`,
		`{}`,
		// Shapes the fast path leaves to json.Unmarshal.
		`{"ok":true,"messages":[{"message_id":"a\u0062"}]}`,
		`{"ok":true,"messages":[{"message_id":"é"}]}`,
		`{"OK":true,"messages":[{"Message_ID":"a"}]}`,
		`{"ok":true,"error":"x","messages":null}`,
		`{"ok":true,"messages":[null,{"message_id":"b"}]}`,
		`{"ok":true,"messages":[{"message_id":"a"}],"messages":[{"org_id":"T"}]}`,
		`{"ok":true,"messages":[{"message_id":"a","message_id":"b"}]}`,
		`{"ok":true,"messages":[{"broker_timestamp":1e3}]}`,
		`{"ok":true,"messages":[{"broker_timestamp":1.0}]}`,
		`{"ok":true,"messages":[{"broker_timestamp":0123}]}`,
		`{"ok":true,"messages":[{"broker_timestamp":99999999999999999999}]}`,
		`{"ok":true,"messages":[{"broker_timestamp":-}]}`,
		`{"ok":null}`,
		`{"ok":true,"messages":[{"org_id":"T1"},{"message_id":"b"}]}`,
		`{"ok":true} x`,
		`{"ok":true,}`,
		`{"ok":true,"messages":[{"message_id":"a"},]}`,
		`{"ok":true,"messages":[{"message_id":"a"}`,
		`{"ok":true,"messages":[{"message_id":"a`,
		`[]`,
		``,
	}
}()

// checkPullDecode asserts that decodePull, when it accepts data, decodes
// what json.Unmarshal does, and that json.Unmarshal accepts it.
func checkPullDecode(t *testing.T, data string) (fast bool) {
	t.Helper()
	var got protocol.PullResponse
	fast = decodePull([]byte(data), &got)
	if !fast {
		if !reflect.DeepEqual(got, protocol.PullResponse{}) {
			t.Fatalf("%q: refused but left %+v", data, got)
		}
		return false
	}
	var want protocol.PullResponse
	if err := json.Unmarshal([]byte(data), &want); err != nil {
		t.Fatalf("%q: decoded, but json.Unmarshal fails: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", data, got, want)
	}
	return true
}

func TestDecodePullMatchesUnmarshal(t *testing.T) {
	t.Parallel()
	fast := 0
	for _, a := range pullAnswers {
		if checkPullDecode(t, a) {
			fast++
		}
	}
	// What the broker writes takes the fast path (guards against a decoder
	// that refuses everything).
	for _, a := range pullAnswers[:3] {
		var r protocol.PullResponse
		if !decodePull([]byte(a), &r) {
			t.Errorf("the broker's answer %.80q took the slow path", a)
		}
	}
	if fast < 7 {
		t.Fatalf("only %d answers decoded on the fast path", fast)
	}
}

func TestPullAnswerDecodesInOnePass(t *testing.T) {
	t.Parallel()
	var a pullAnswer
	if !a.decodeFast([]byte(pullAnswers[0])) || !a.answerOK() || len(a.Messages) != 3 || a.Messages[2].WorkspaceID != "T2" {
		t.Fatalf("pull answer: %+v", a.PullResponse)
	}
}

// FuzzDecodePull checks decodePull against json.Unmarshal.
func FuzzDecodePull(f *testing.F) {
	for _, a := range pullAnswers {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, data string) { checkPullDecode(t, data) })
}

// BenchmarkPullDecode decodes a pull answer of 10 messages of the size the
// load harness sends: "fast" is decodePull, "unmarshal" json.Unmarshal.
// Run: go test -run x -bench PullDecode -cpu 1 ./bridge/
func BenchmarkPullDecode(b *testing.B) {
	msgs := make([]protocol.InboxMessage, 10)
	for i := range msgs {
		msgs[i] = protocol.InboxMessage{MessageID: "m-" + strings.Repeat("0", 20), OrgID: "T0123ABCD", WorkspaceID: "T0123ABCD",
			Encrypted: strings.Repeat("QUJD", 450), BrokerTimestamp: 1771465000, BrokerSignature: strings.Repeat("c2ln", 22)}
	}
	data, _ := json.Marshal(protocol.PullResponse{OK: true, Messages: msgs})
	for _, c := range []struct {
		name   string
		decode func([]byte, *protocol.PullResponse) bool
	}{
		{"fast", decodePull},
		{"unmarshal", func(d []byte, r *protocol.PullResponse) bool { return json.Unmarshal(d, r) == nil }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				var r protocol.PullResponse
				if !c.decode(data, &r) || len(r.Messages) != 10 {
					b.Fatal("not decoded")
				}
			}
		})
	}
}

package broker

import (
	"bytes"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/sealrelay/sealrelay/protocol"
)

func TestWritePullResponseMatchesWriteJSON(t *testing.T) {
	t.Parallel()
	msgs := []protocol.InboxMessage{
		{MessageID: "m1", OrgID: "T0ABC", WorkspaceID: "T0ABC", Encrypted: "c2VhbGVkIGJveA==", BrokerTimestamp: 1771465000, BrokerSignature: "c2lnbmF0dXJl"},
		{MessageID: "<&>", OrgID: "bad\xffutf8", WorkspaceID: "bad\xffutf8", Encrypted: "\u2028", BrokerTimestamp: -1, BrokerSignature: "s\x01"},
	}
	for _, c := range [][]protocol.InboxMessage{nil, {}, msgs[:1], msgs} {
		rec := httptest.NewRecorder()
		writePullResponse(rec, c)
		ref := httptest.NewRecorder()
		writeJSON(ref, 200, protocol.PullResponse{OK: true, Messages: c})
		if !bytes.Equal(rec.Body.Bytes(), ref.Body.Bytes()) || !reflect.DeepEqual(rec.Header(), ref.Header()) || rec.Code != ref.Code {
			t.Fatalf("writePullResponse: %d %v %s; writeJSON: %d %v %s", rec.Code, rec.Header(), rec.Body.Bytes(), ref.Code, ref.Header(), ref.Body.Bytes())
		}
	}
}

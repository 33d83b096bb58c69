package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzOpenEnvelope feeds arbitrary inbox messages to OpenEnvelope: it must
// never panic, and it must never accept a message the broker did not sign.
func FuzzOpenEnvelope(f *testing.F) {
	v, k := loadVectors(f)
	good, _ := json.Marshal(v.InboundEnvelope.Envelope)
	f.Add(good)
	f.Add([]byte(`{"message_id":"m","org_id":"T1","encrypted":"AAAA","broker_timestamp":1,"broker_signature":"AAAA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m InboxMessage
		if json.Unmarshal(data, &m) != nil {
			return
		}
		env, pt, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox)
		if err != nil {
			if env != nil || pt != nil {
				t.Fatal("error with a result")
			}
			return
		}
		// Only the exact signed vector may be accepted.
		if m.Encrypted != v.InboundEnvelope.Envelope.Encrypted || m.OrgID != v.InboundEnvelope.Envelope.OrgID ||
			m.BrokerTimestamp != v.InboundEnvelope.Envelope.BrokerTimestamp {
			t.Fatalf("accepted a message the broker never signed: %+v", m)
		}
	})
}

package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
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

// FuzzOpenEnvelopePlaintext seals arbitrary plaintext correctly (the
// broker's keys, the agent's key) and opens it: OpenEnvelope never panics,
// accepts only envelopes with a source, a type and the signed timestamp,
// and what it accepts rebuilds (Plaintext) into an envelope that opens to
// the same fields, §8.2 ones included.
func FuzzOpenEnvelopePlaintext(f *testing.F) {
	_, k := loadVectors(f)
	held := Envelope{Source: SourceSlack, Type: TypeSlashCommand, BrokerTimestamp: 1771465000,
		ResponseExpected: true, RespondBy: 1771465002500, Payload: json.RawMessage(`{"command":"/x"}`)}
	f.Add(held.Plaintext())
	f.Add([]byte(`{"source":"system","type":"events_dropped","broker_timestamp":1771465000,"payload":{"count":1}}`))
	f.Add([]byte(`{"source":"slack","type":"t","broker_timestamp":1771465000,"respond_by":"x","payload":{}}`))
	f.Add([]byte(`{"source":"slack","type":"t","broker_timestamp":1771465000}`))
	f.Fuzz(func(t *testing.T, pt []byte) {
		const ts = 1771465000
		m, err := SealEnvelope(pt, "T1", "m-1", ts, k.agentBox.Public, k.brokerSigning)
		if err != nil {
			t.Fatal(err)
		}
		env, got, err := OpenEnvelope(m, k.brokerSigning.Public(), k.agentBox)
		if err != nil {
			if !errors.Is(err, ErrEnvelopeMalformed) || env != nil || got != nil {
				t.Fatalf("open: %v (env %v)", err, env)
			}
			return
		}
		if env.Source == "" || env.Type == "" || env.BrokerTimestamp != ts {
			t.Fatalf("accepted %+v", env)
		}
		if len(env.Payload) == 0 || !json.Valid(env.Payload) {
			return // absent or null payload: nothing to rebuild around
		}
		m2, err := SealEnvelope(env.Plaintext(), "T1", "m-2", ts, k.agentBox.Public, k.brokerSigning)
		if err != nil {
			t.Fatal(err)
		}
		again, _, err := OpenEnvelope(m2, k.brokerSigning.Public(), k.agentBox)
		if err != nil {
			t.Fatalf("rebuilt envelope of %+v does not open: %v", env, err)
		}
		if again.Source != env.Source || again.Type != env.Type || again.ResponseExpected != env.ResponseExpected ||
			(env.ResponseExpected && again.RespondBy != env.RespondBy) || !bytes.Equal(bytes.TrimSpace(again.Payload), bytes.TrimSpace(env.Payload)) {
			t.Fatalf("rebuilt %+v, opened %+v", env, again)
		}
	})
}

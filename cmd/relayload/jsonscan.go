package main

import (
	"encoding/json"
	"errors"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
)

// The harness reads two fields of every delivery (the SSE event's
// message_id and its payload's type and event_id). Decoding the whole
// event with encoding/json cost the generator about a tenth of its CPU, so
// it is read with internal/jsonscan instead: it gives exactly what
// json.Unmarshal into the structs below would — the same errors-or-not for
// any input (syntax errors anywhere, a field of the wrong type, trailing
// data), keys matched case-insensitively, the last of duplicate keys, null
// leaving a field unset — checked against encoding/json by
// FuzzDeliveryIDsMatchEncodingJSON. Only the rare string with an escape or
// a non-ASCII byte is handed to encoding/json.
//
//	SSE data: {"message_id": string, "type": string, "payload": <raw>}
//	payload:  {"type": string, "event_id": string}

var (
	errSSENotJSON    = errors.New("SSE data is not JSON")
	errSSENoFields   = errors.New("SSE data has no message_id or payload")
	errPayloadNoJSON = errors.New("delivered payload is not JSON")
	errNotCallback   = errors.New("delivered payload is not an Events API callback with an event_id")
)

// sseEventID reads the Slack event id of one SSE event's data (the bridge's
// Event object).
func sseEventID(data []byte) (string, error) {
	s := jsonscan.New(data)
	var msgID string
	var payload []byte
	ok := s.Object(func(key []byte, plain bool) bool {
		switch {
		case jsonscan.KeyIs(key, plain, "message_id"):
			return stringField(&s, &msgID)
		case jsonscan.KeyIs(key, plain, "type"):
			var ignored string
			return stringField(&s, &ignored)
		case jsonscan.KeyIs(key, plain, "payload"):
			var ok bool
			payload, ok = s.Raw()
			return ok
		}
		return s.Skip()
	}) && s.AtEnd()
	if !ok {
		return "", errSSENotJSON
	}
	if msgID == "" || len(payload) == 0 {
		return "", errSSENoFields
	}
	return deliveredEventID(payload)
}

// deliveredEventID reads the Slack event id of a delivered Events API
// callback (the forwarded body, or an SSE event's payload).
func deliveredEventID(payload []byte) (string, error) {
	s := jsonscan.New(payload)
	var typ, id string
	ok := s.Object(func(key []byte, plain bool) bool {
		switch {
		case jsonscan.KeyIs(key, plain, "type"):
			return stringField(&s, &typ)
		case jsonscan.KeyIs(key, plain, "event_id"):
			return stringField(&s, &id)
		}
		return s.Skip()
	}) && s.AtEnd()
	if !ok {
		return "", errPayloadNoJSON
	}
	if typ != "event_callback" || id == "" {
		return "", errNotCallback
	}
	return id, nil
}

// stringField reads a string value into *dst; null leaves *dst unchanged;
// any other value is a type error (false).
func stringField(s *jsonscan.Scanner, dst *string) bool {
	if s.Null() {
		return true
	}
	s.Peek()
	start := s.Pos()
	raw, plain, ok := s.String()
	if !ok {
		return false
	}
	if plain {
		*dst = string(raw)
		return true
	}
	return json.Unmarshal(s.Since(start), dst) == nil
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
)

// The harness reads two fields of every delivery (the SSE event's
// message_id and its payload's type and event_id). Decoding the whole
// event with encoding/json cost the generator about a tenth of its CPU, so
// it is read with the validating scanner below instead: it gives exactly
// what json.Unmarshal into the structs below would — the same errors-or-not
// for any input (syntax errors anywhere, a field of the wrong type, trailing
// data), keys matched case-insensitively, the last of duplicate keys, null
// leaving a field unset — checked against encoding/json by
// FuzzDeliveryIDsMatchEncodingJSON. Only the rare string with an escape or
// a non-ASCII byte is handed to encoding/json.
//
//	SSE data: {"message_id": string, "type": string, "payload": <raw>}
//	payload:  {"type": string, "event_id": string}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

var (
	errSSENotJSON    = errors.New("SSE data is not JSON")
	errSSENoFields   = errors.New("SSE data has no message_id or payload")
	errPayloadNoJSON = errors.New("delivered payload is not JSON")
	errNotCallback   = errors.New("delivered payload is not an Events API callback with an event_id")
)

// sseEventID reads the Slack event id of one SSE event's data (the bridge's
// Event object).
func sseEventID(data []byte) (string, error) {
	s := jsonScan{b: data}
	var msgID string
	var payload []byte
	ok := s.document(func(key []byte, plain bool) bool {
		switch {
		case keyIs(key, plain, "message_id"):
			return s.stringField(&msgID)
		case keyIs(key, plain, "type"):
			var ignored string
			return s.stringField(&ignored)
		case keyIs(key, plain, "payload"):
			start := s.i
			if !s.value() {
				return false
			}
			payload = s.b[start:s.i]
			return true
		}
		return s.value()
	})
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
	s := jsonScan{b: payload}
	var typ, id string
	ok := s.document(func(key []byte, plain bool) bool {
		switch {
		case keyIs(key, plain, "type"):
			return s.stringField(&typ)
		case keyIs(key, plain, "event_id"):
			return s.stringField(&id)
		}
		return s.value()
	})
	if !ok {
		return "", errPayloadNoJSON
	}
	if typ != "event_callback" || id == "" {
		return "", errNotCallback
	}
	return id, nil
}

// keyIs reports whether an object key (raw, between the quotes; plain when
// it has no escape and no byte ≥ 0x80) names field as encoding/json matches
// it: exactly or case-insensitively.
func keyIs(raw []byte, plain bool, field string) bool {
	if plain {
		return len(raw) == len(field) && bytes.EqualFold(raw, []byte(field))
	}
	var k string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) != nil {
		return false
	}
	return bytes.EqualFold([]byte(k), []byte(field))
}

// jsonScan walks JSON text, validating it as encoding/json's scanner does.
type jsonScan struct {
	b     []byte
	i     int
	depth int
}

// document reads one JSON object filling the whole input (white space
// around it allowed), calling field for each key with the scanner on the
// value, which field must consume. It reports false on a syntax error,
// when the value is not an object (encoding/json refuses any other value
// for a struct, and null sets nothing), or when field does.
func (s *jsonScan) document(field func(key []byte, plain bool) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	if !s.object(field) {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// stringField reads a string value into *dst; null leaves *dst unchanged;
// any other value is a type error (false).
func (s *jsonScan) stringField(dst *string) bool {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		return s.literal("null")
	}
	start := s.i
	raw, plain, ok := s.str()
	if !ok {
		return false
	}
	if plain {
		*dst = string(raw)
		return true
	}
	return json.Unmarshal(s.b[start:s.i], dst) == nil
}

// value skips one value.
func (s *jsonScan) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array()
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

// object reads an object at s.i ('{'), calling field (nil: skip) per key.
func (s *jsonScan) object(field func(key []byte, plain bool) bool) bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		key, plain, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if field != nil {
			ok = field(key, plain)
		} else {
			ok = s.value()
		}
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *jsonScan) array() bool {
	if s.depth++; s.depth > maxJSONDepth {
		return false
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// str reads a string at s.i and returns the bytes between its quotes;
// plain means no escape and no byte ≥ 0x80 (the raw bytes are the value).
func (s *jsonScan) str() (raw []byte, plain, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	plain = true
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], plain, true
		case c == '\\':
			plain = false
			j++
			if j >= len(s.b) {
				return nil, false, false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				j += 4
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			plain = false
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *jsonScan) number() bool {
	b, j := s.b, s.i
	if b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	default:
		return false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if j >= len(b) || !isDigit(b[j]) {
			return false
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) || !isDigit(b[j]) {
			return false
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	}
	s.i = j
	return true
}

func (s *jsonScan) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

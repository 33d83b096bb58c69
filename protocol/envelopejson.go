package protocol

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
)

// This file decodes the opened envelope (OpenEnvelope) without
// encoding/json's reflection: one validating pass (internal/jsonscan) over
// the plaintext. Whatever the pass is not sure about — an escape or a
// non-ASCII byte in a key or in source/type, a number that is not a
// canonical integer, a field of another JSON type (a mistyped §8.2 field
// among them), invalid JSON, a document that is not an object — goes to
// json.Unmarshal, so every envelope opens (or not) to exactly the fields it
// opened to before (envelopejson_test.go checks this differentially).

// decodeEnvelope decodes the plaintext of an envelope into env (zero on
// entry) as json.Unmarshal does, and reports whether OpenEnvelope accepts
// it as JSON: json.Unmarshal returned no error, or only a mistyped §8.2
// field (heldFieldTypeError). The payload is a copy: the plaintext is wiped
// by OpenEnvelope's callers while the payload lives on.
func decodeEnvelope(pt []byte, env *Envelope) bool {
	if decodeEnvelopeFast(pt, env) {
		return true
	}
	var ok bool
	*env, ok = decodeEnvelopeJSON(pt)
	return ok
}

// decodeEnvelopeJSON is decodeEnvelope with json.Unmarshal (its own
// envelope, so that the caller's need not escape to the heap).
func decodeEnvelopeJSON(pt []byte) (Envelope, bool) {
	var env Envelope
	err := json.Unmarshal(pt, &env)
	return env, err == nil || heldFieldTypeError(err)
}

// decodeEnvelopeFast decodes pt into env, or reports false when it is not
// sure json.Unmarshal would decode it the same way without error (env is
// then partial). Keys match as encoding/json matches them (exactly or
// ignoring ASCII case); a key given twice takes its last value, and null
// leaves a field as it was, except the payload, which becomes the raw
// null (json.RawMessage takes every value as it is).
func decodeEnvelopeFast(pt []byte, env *Envelope) bool {
	s := jsonscan.New(pt)
	var payload []byte
	ok := s.Object(func(key []byte, plain bool) bool {
		switch {
		case !plain:
			return false // encoding/json unquotes and folds it: leave it to it
		case jsonscan.KeyIs(key, true, "source"):
			return scanName(&s, &env.Source)
		case jsonscan.KeyIs(key, true, "type"):
			return scanName(&s, &env.Type)
		case jsonscan.KeyIs(key, true, "broker_timestamp"):
			return s.Int64OrNull(&env.BrokerTimestamp)
		case jsonscan.KeyIs(key, true, "response_expected"):
			return s.BoolOrNull(&env.ResponseExpected)
		case jsonscan.KeyIs(key, true, "respond_by"):
			return s.Int64OrNull(&env.RespondBy)
		case jsonscan.KeyIs(key, true, "payload"):
			var ok bool
			payload, ok = s.Raw()
			return ok
		}
		return s.Skip()
	}) && s.AtEnd()
	if ok && payload != nil {
		env.Payload = bytes.Clone(payload)
	}
	return ok
}

// scanName consumes a plain string or null into *dst (null leaves it
// unchanged, as encoding/json does). Anything else is "not sure". The
// sources and types brokers write take no allocation.
func scanName(s *jsonscan.Scanner, dst *string) bool {
	if s.Null() {
		return true
	}
	raw, plain, ok := s.String()
	if ok && plain {
		*dst = envelopeName(raw)
	}
	return ok && plain
}

// envelopeName returns string(raw), the constant itself for a known
// envelope source or type.
func envelopeName(raw []byte) string {
	switch string(raw) {
	case SourceSlack:
		return SourceSlack
	case SourceSystem:
		return SourceSystem
	case TypeEventCallback:
		return TypeEventCallback
	case TypeSlashCommand:
		return TypeSlashCommand
	case "block_actions":
		return "block_actions"
	case "view_submission":
		return "view_submission"
	case TypeAppUninstalled:
		return TypeAppUninstalled
	case TypeTokensRevoked:
		return TypeTokensRevoked
	case TypeAppRateLimited:
		return TypeAppRateLimited
	case TypeEventsDropped:
		return TypeEventsDropped
	}
	return string(raw)
}

// heldFieldTypeError reports whether err is only a mistyped §8.2 field. Such
// an envelope still opens, as if the field were absent: the fields are an
// extension the bridge reads when it can.
func heldFieldTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te) && (te.Field == "response_expected" || te.Field == "respond_by")
}

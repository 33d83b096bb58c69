package protocol

// The pull path's per-message work without encoding/json's reflection:
// reading a copy stored in the JSON form and writing the §4.5 pull answer.
// Both give exactly what the reflective code gives — ParseStored falls back
// to encoding/json for anything but the form AppendStoredJSON writes, and
// AppendPullResponse writes json.Marshal's bytes (pullwire_test.go checks
// both against encoding/json).

import (
	"bytes"
	"strconv"
)

// storedJSONKeys are the keys of StoredMessage in the order
// AppendStoredJSON writes them.
var (
	storedKeyO = []byte(`{"o":`)
	storedKeyE = []byte(`,"e":`)
	storedKeyT = []byte(`,"t":`)
	storedKeyS = []byte(`,"s":`)
)

// parseStoredJSONFast reads the JSON form as AppendStoredJSON writes it:
// {"o":…,"e":…,"t":…,"s":…} in that order, strings without escapes and of
// printable ASCII only, the timestamp as strconv.AppendInt writes it. Such
// a body decodes with encoding/json to the same fields; for anything else
// (escapes, other key orders, whitespace) ok is false and the caller
// decodes with encoding/json.
func parseStoredJSONFast(messageID string, body []byte) (m InboxMessage, ok bool) {
	rest, ok := bytes.CutPrefix(body, storedKeyO)
	if !ok {
		return InboxMessage{}, false
	}
	org, rest, ok := cutPlainString(rest)
	if !ok {
		return InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyE); !ok {
		return InboxMessage{}, false
	}
	enc, rest, ok := cutPlainString(rest)
	if !ok {
		return InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyT); !ok {
		return InboxMessage{}, false
	}
	ts, rest, ok := cutCanonicalInt(rest)
	if !ok {
		return InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyS); !ok {
		return InboxMessage{}, false
	}
	sig, rest, ok := cutPlainString(rest)
	if !ok || len(rest) != 1 || rest[0] != '}' {
		return InboxMessage{}, false
	}
	o := string(org)
	return InboxMessage{
		MessageID: messageID, OrgID: o, WorkspaceID: o, Encrypted: string(enc),
		BrokerTimestamp: ts, BrokerSignature: string(sig),
	}, true
}

// cutPlainString reads a JSON string at the start of b whose bytes are all
// jsonPlain (no escapes, printable ASCII), so its value is its bytes.
func cutPlainString(b []byte) (val, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			return b[1:i], b[i+1:], true
		}
		if !jsonPlain[c] {
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// cutCanonicalInt reads an int64 at the start of b written as
// strconv.AppendInt writes it (an optional '-', no leading zero).
func cutCanonicalInt(b []byte) (int64, []byte, bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	digits := i - start
	if digits == 0 || digits > 19 || (b[start] == '0' && (digits > 1 || start > 0)) {
		return 0, nil, false
	}
	n, err := strconv.ParseInt(string(b[:i]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	return n, b[i:], true
}

// AppendPullResponse appends the JSON of PullResponse{OK: true, Messages:
// msgs} to dst, byte for byte what json.Marshal writes (§4.5), without
// reflection: the broker writes every pull answer with it.
func AppendPullResponse(dst []byte, msgs []InboxMessage) []byte {
	dst = append(dst, `{"ok":true,"messages":`...)
	if msgs == nil {
		return append(dst, `null}`...)
	}
	dst = append(dst, '[')
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"message_id":`...)
		dst = appendJSONString(dst, m.MessageID)
		dst = append(dst, `,"org_id":`...)
		dst = appendJSONString(dst, m.OrgID)
		dst = append(dst, `,"workspace_id":`...)
		dst = appendJSONString(dst, m.WorkspaceID)
		dst = append(dst, `,"encrypted":`...)
		dst = appendJSONString(dst, m.Encrypted)
		dst = append(dst, `,"broker_timestamp":`...)
		dst = strconv.AppendInt(dst, m.BrokerTimestamp, 10)
		dst = append(dst, `,"broker_signature":`...)
		dst = appendJSONString(dst, m.BrokerSignature)
		dst = append(dst, '}')
	}
	return append(dst, `]}`...)
}

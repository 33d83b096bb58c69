package broker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/sealrelay/sealrelay/protocol"
)

// This file holds the pull path's per-message work done without
// encoding/json's reflection: reading a copy stored in the JSON form
// (parseStored) and writing the pull response (appendPullResponse). Both
// give exactly what the reflective code gives — parseStored falls back to
// protocol.ParseStored for anything but the form protocol.AppendStoredJSON
// writes, and appendPullResponse writes json.Marshal's bytes — so the wire
// is unchanged (pullwire_test.go checks both against encoding/json).

// storedJSONKeys are the keys of protocol.StoredMessage in the order
// protocol.AppendStoredJSON writes them.
var (
	storedKeyO = []byte(`{"o":`)
	storedKeyE = []byte(`,"e":`)
	storedKeyT = []byte(`,"t":`)
	storedKeyS = []byte(`,"s":`)
)

// parseStored is protocol.ParseStored with a fast path for the JSON form as
// protocol.AppendStoredJSON writes it: {"o":…,"e":…,"t":…,"s":…} in that
// order, strings without escapes and of printable ASCII only, the timestamp
// as strconv.AppendInt writes it. Such a body decodes with encoding/json to
// the same fields; anything else (the binary form, escapes, other key
// orders, whitespace) goes through protocol.ParseStored. prevOrg, when equal
// to the stored org id, is reused instead of allocating it again (a pull
// serves one agent, so every copy names the same org).
func parseStored(messageID string, body []byte, prevOrg string) (protocol.InboxMessage, error) {
	if m, ok := parseStoredJSONFast(messageID, body, prevOrg); ok {
		return m, nil
	}
	m, err := protocol.ParseStored(messageID, body)
	if err != nil {
		return m, err //nolint:wrapcheck // protocol's error names the problem
	}
	return m, nil
}

func parseStoredJSONFast(messageID string, body []byte, prevOrg string) (protocol.InboxMessage, bool) {
	rest, ok := bytes.CutPrefix(body, storedKeyO)
	if !ok {
		return protocol.InboxMessage{}, false
	}
	org, rest, ok := cutPlainString(rest)
	if !ok {
		return protocol.InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyE); !ok {
		return protocol.InboxMessage{}, false
	}
	enc, rest, ok := cutPlainString(rest)
	if !ok {
		return protocol.InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyT); !ok {
		return protocol.InboxMessage{}, false
	}
	ts, rest, ok := cutCanonicalInt(rest)
	if !ok {
		return protocol.InboxMessage{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, storedKeyS); !ok {
		return protocol.InboxMessage{}, false
	}
	sig, rest, ok := cutPlainString(rest)
	if !ok || len(rest) != 1 || rest[0] != '}' {
		return protocol.InboxMessage{}, false
	}
	o := prevOrg
	if string(org) != prevOrg {
		o = string(org)
	}
	return protocol.InboxMessage{
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

// appendJSONString appends s as a JSON string exactly as encoding/json
// marshals it: printable ASCII other than '"', '\\', '<', '>' and '&' as
// is, anything else through json.Marshal (HTML-safe escaping, invalid UTF-8
// as U+FFFD). The ids, base64 and signatures of a pull response take the
// first way.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// jsonPlain marks the bytes encoding/json writes unchanged inside a string:
// printable ASCII except '"', '\\' and the HTML-escaped '<', '>', '&'.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendPullResponse appends the JSON of protocol.PullResponse{OK: true,
// Messages: msgs} to dst, byte for byte what json.Marshal writes.
func appendPullResponse(dst []byte, msgs []protocol.InboxMessage) []byte {
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

// pullSize is the JSON a pull response adds per message around its
// encrypted field.
const pullSize = 256

// respBufs holds response buffers of the pull path; buffers beyond
// maxPooledResp are left to the collector.
var respBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledResp = 1 << 20

// writePullResponse writes the 200 answer of a pull carrying msgs, as
// writeJSON(w, 200, protocol.PullResponse{OK: true, Messages: msgs}) does.
func writePullResponse(w http.ResponseWriter, msgs []protocol.InboxMessage) {
	bp := respBufs.Get().(*[]byte)
	n := 32
	for i := range msgs {
		n += len(msgs[i].Encrypted) + len(msgs[i].MessageID) + 2*len(msgs[i].OrgID) + len(msgs[i].BrokerSignature) + pullSize
	}
	b := (*bp)[:0]
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = append(appendPullResponse(b, msgs), '\n')
	writeJSONBytes(w, http.StatusOK, b)
	if cap(b) <= maxPooledResp {
		*bp = b[:0]
		respBufs.Put(bp)
	}
}

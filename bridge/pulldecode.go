package bridge

import (
	"github.com/sealrelay/sealrelay/protocol"
)

// decodePull decodes a pull answer in the shape the broker writes it
// (json.Marshal of protocol.PullResponse) in one pass: json.Unmarshal
// scans the whole answer twice (validation, then decoding), and a pull
// answer is mostly base64 text. It accepts only a strict subset of JSON —
// the exact field names, strings of printable ASCII without escapes,
// integers without fraction or exponent, "messages" once — and in it it
// decodes exactly what json.Unmarshal decodes. On anything else it leaves
// *out zero and reports false, and the caller takes json.Unmarshal.
func decodePull(data []byte, out *protocol.PullResponse) bool {
	d := pullDecoder{data: data}
	if !d.answer(out) {
		*out = protocol.PullResponse{}
		return false
	}
	return true
}

type pullDecoder struct {
	data []byte
	i    int
}

func (d *pullDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c after optional whitespace.
func (d *pullDecoder) byte(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek returns the next byte after whitespace (0 at the end).
func (d *pullDecoder) peek() byte {
	d.space()
	if d.i < len(d.data) {
		return d.data[d.i]
	}
	return 0
}

// literal consumes the word w (true, false, null).
func (d *pullDecoder) literal(w string) bool {
	d.space()
	if len(d.data)-d.i >= len(w) && string(d.data[d.i:d.i+len(w)]) == w {
		d.i += len(w)
		return true
	}
	return false
}

// rawString consumes a string of printable ASCII without escapes and
// returns its contents (aliasing data).
func (d *pullDecoder) rawString() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			return d.data[start : d.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// str decodes a string field, reusing prev when it holds the same text
// (org and workspace ids repeat in every message).
func (d *pullDecoder) str(prev string) (string, bool) {
	b, ok := d.rawString()
	if !ok {
		return "", false
	}
	if string(b) == prev {
		return prev, true
	}
	return string(b), true
}

// int64 decodes an integer of at most 18 digits (no overflow possible).
func (d *pullDecoder) int64() (int64, bool) {
	d.space()
	neg := d.i < len(d.data) && d.data[d.i] == '-'
	if neg {
		d.i++
	}
	start := d.i
	var n int64
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		n = n*10 + int64(d.data[d.i]-'0')
		d.i++
	}
	digits := d.i - start
	if digits == 0 || digits > 18 || (digits > 1 && d.data[start] == '0') {
		return 0, false
	}
	if d.i < len(d.data) {
		switch d.data[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	return n, true
}

// object decodes an object, calling field for each key; field consumes
// the value.
func (d *pullDecoder) object(field func(key []byte) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	for {
		key, ok := d.rawString()
		if !ok || !d.byte(':') || !field(key) {
			return false
		}
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

func (d *pullDecoder) answer(out *protocol.PullResponse) bool {
	seenMessages := false
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "ok":
			switch {
			case d.literal("true"):
				out.OK = true
			case d.literal("false"):
				out.OK = false
			default:
				return false
			}
			return true
		case "messages":
			if seenMessages {
				return false // json.Unmarshal would merge the two
			}
			seenMessages = true
			return d.messages(out)
		}
		return false
	})
	if !ok {
		return false
	}
	d.space()
	return d.i == len(d.data)
}

func (d *pullDecoder) messages(out *protocol.PullResponse) bool {
	if d.literal("null") {
		out.Messages = nil
		return true
	}
	if !d.byte('[') {
		return false
	}
	out.Messages = make([]protocol.InboxMessage, 0, 16)
	if d.byte(']') {
		return true
	}
	var org, ws string
	for {
		var m protocol.InboxMessage
		m.OrgID, m.WorkspaceID = org, ws
		if d.peek() != '{' || !d.message(&m) {
			return false
		}
		org, ws = m.OrgID, m.WorkspaceID
		out.Messages = append(out.Messages, m)
		if d.byte(']') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

// message decodes one message into m, whose OrgID and WorkspaceID hold
// the previous message's (to be reused when equal; a message without
// them gets them cleared).
func (d *pullDecoder) message(m *protocol.InboxMessage) bool {
	prevOrg, prevWS := m.OrgID, m.WorkspaceID
	m.OrgID, m.WorkspaceID = "", ""
	return d.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "message_id":
			m.MessageID, ok = d.str("")
		case "org_id":
			m.OrgID, ok = d.str(prevOrg)
		case "workspace_id":
			m.WorkspaceID, ok = d.str(prevWS)
		case "encrypted":
			m.Encrypted, ok = d.str("")
		case "broker_timestamp":
			m.BrokerTimestamp, ok = d.int64()
		case "broker_signature":
			m.BrokerSignature, ok = d.str("")
		}
		return ok
	})
}

package bridge

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// appendEventJSON appends the JSON object of ev — the bytes json.Marshal(ev)
// produces — to dst, without reflection and without re-scanning the
// payload with encoding/json's validating scanner: the payload comes from
// an envelope that json.Unmarshal already validated (protocol.OpenEnvelope),
// so one pass that drops the whitespace between tokens and applies
// json.Marshal's HTML and U+2028/U+2029 escapes gives the same bytes. The
// output never holds a raw newline (the SSE data: line relies on it): a
// payload with a control byte inside a string, an unterminated string, an
// empty payload or a field that needs escaping takes json.Marshal itself.
func appendEventJSON(dst []byte, ev *Event) ([]byte, error) {
	start := len(dst)
	ok := plainJSONString(ev.MessageID) && plainJSONString(ev.Source) &&
		plainJSONString(ev.Type) && plainJSONString(ev.ThreadID) && len(ev.Payload) > 0
	if ok {
		dst = append(dst, `{"message_id":"`...)
		dst = append(dst, ev.MessageID...)
		dst = append(dst, `","source":"`...)
		dst = append(dst, ev.Source...)
		dst = append(dst, `","type":"`...)
		dst = append(dst, ev.Type...)
		dst = append(dst, `","broker_timestamp":`...)
		dst = strconv.AppendInt(dst, ev.BrokerTimestamp, 10)
		dst = append(dst, `,"payload":`...)
		dst, ok = appendCompactHTML(dst, ev.Payload)
	}
	if ok {
		if ev.ThreadID != "" {
			dst = append(dst, `,"thread_id":"`...)
			dst = append(dst, ev.ThreadID...)
			dst = append(dst, '"')
		}
		return append(dst, '}'), nil
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return dst[:start], fmt.Errorf("encode event: %w", err)
	}
	return append(dst[:start], data...), nil
}

// plainJSONString reports whether json.Marshal writes s as is between
// quotes: printable ASCII without '"', '\\' and the HTML escapes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// appendCompactHTML appends the valid JSON value src as json.Compact with
// HTML escaping (what json.Marshal does with a json.RawMessage) writes it:
// whitespace outside strings dropped; '<', '>', '&', U+2028 and U+2029
// escaped. It reports false (dst unchanged) for a control byte inside a
// string or an unterminated string; it does not otherwise validate src.
func appendCompactHTML(dst, src []byte) ([]byte, bool) {
	orig := len(dst)
	inString, escaped := false, false
	start := 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '<' || c == '>' || c == '&':
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			start = i + 1
			escaped = false
			continue
		case c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8:
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[src[i+2]&0xF])
			i += 2
			start = i + 1
			escaped = false
			continue
		}
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			case c < 0x20:
				return dst[:orig], false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			dst = append(dst, src[start:i]...)
			start = i + 1
		}
	}
	if inString {
		return dst[:orig], false
	}
	return append(dst, src[start:]...), true
}

const hexDigits = "0123456789abcdef"

package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// appendEventJSON appends the JSON object of ev — the bytes json.Marshal(ev)
// produces — to dst without reflection: the fixed fields are written
// directly and the payload goes through json.Compact and json.HTMLEscape,
// as json.Marshal does with a json.RawMessage. The output never holds a raw
// newline (the SSE data: line relies on it). A field that needs escaping, an
// empty payload or an invalid one takes json.Marshal itself.
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

// appendCompactHTML appends the JSON value src as json.Marshal writes a
// json.RawMessage: compacted (json.Compact, which also validates it) and
// HTML-escaped ('<', '>', '&', U+2028, U+2029; json.HTMLEscape). It reports
// false, dst unchanged, when src is not valid JSON.
func appendCompactHTML(dst, src []byte) ([]byte, bool) {
	var compact bytes.Buffer
	compact.Grow(len(src))
	if err := json.Compact(&compact, src); err != nil {
		return dst, false
	}
	out := bytes.NewBuffer(dst)
	json.HTMLEscape(out, compact.Bytes())
	return out.Bytes(), true
}

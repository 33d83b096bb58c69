package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxLocalBody bounds local API request bodies: 640 KiB. It is chosen so
// that the request the bridge then sends to the broker always fits the
// broker's 1 MiB limit (protocol.MaxBodySize): the sealed body is the
// re-encoded JSON (at most 120,000 bytes longer, when all 40,000 text
// characters are U+2028, which JSON escapes from 3 to 6 bytes; nothing
// else grows because HTML escaping is off), plus 16 bytes of box tag,
// base64-encoded (× 4/3), plus under 1 KiB of request fields:
// 4/3 × (655,360 + 120,016) + 1,024 < 1,048,576.
const MaxLocalBody = 640 << 10

const maxLocalBody = MaxLocalBody

// maxLocalBodyText is maxLocalBody as the error message states it.
const maxLocalBodyText = "640 KiB"

// decodeBody reads a JSON object into v. It rejects oversized bodies (413),
// bodies that are not valid UTF-8 (raw bytes, or \u escapes of unpaired
// surrogates), unknown fields (naming the field, and
// the known one when it is close) and trailing data (400).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLocalBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large (limit "+maxLocalBodyText+")")
			return false
		}
		writeError(w, http.StatusBadRequest, "could not read the request body")
		return false
	}
	if !utf8.Valid(raw) {
		writeError(w, http.StatusBadRequest, "invalid JSON body: not valid UTF-8")
		return false
	}
	if hasLoneSurrogate(raw) {
		// encoding/json would silently turn it into U+FFFD.
		writeError(w, http.StatusBadRequest, `invalid JSON body: a \u escape is an unpaired UTF-16 surrogate (not valid Unicode)`)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+jsonErrorText(err, v))
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body: trailing data after the object")
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "invalid JSON body: trailing data after the object")
		return false
	}
	return true
}

func jsonErrorText(err error, v any) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("field %q must be a %s", ute.Field, ute.Type.Kind())
	}
	s := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(s, "unknown field "); ok {
		name = strings.Trim(name, `"`)
		msg := fmt.Sprintf("unknown field %q", truncate(name, 64))
		if near := closestField(name, jsonFields(v)); near != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", near)
		}
		return msg
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// jsonFields lists the JSON field names of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// closestField returns the known field name close to name: the same up to
// case and '-'/' ' for '_', or at most two edits away. "" when none is.
func closestField(name string, known []string) string {
	norm := strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(name))
	best, bestD := "", 3
	for _, k := range known {
		if norm == k {
			return k
		}
		if d := editDistance(norm, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes), capped for
// long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// hasLoneSurrogate reports whether a JSON string in b holds a \u escape of
// a UTF-16 surrogate that is not part of a high-low pair. Malformed escapes
// are left to the JSON decoder.
func hasLoneSurrogate(b []byte) bool {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(b) {
				return false
			}
			if b[i+1] != 'u' {
				i++ // a one-character escape
				continue
			}
			r, ok := hex4(b[i+2:])
			if !ok {
				return false
			}
			i += 5 // at the escape's last hex digit
			switch {
			case r >= 0xD800 && r < 0xDC00:
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if r2, ok := hex4(b[i+3:]); ok && r2 >= 0xDC00 && r2 < 0xE000 {
						i += 6
						continue
					}
				}
				return true
			case r >= 0xDC00 && r < 0xE000:
				return true
			}
		}
	}
	return false
}

// hex4 parses four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

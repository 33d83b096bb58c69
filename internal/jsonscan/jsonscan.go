// Package jsonscan is a validating, reflection-free JSON scanner over a
// []byte, for fast paths in front of encoding/json.
//
// Contract: whatever the scanner accepts as a value is exactly what
// encoding/json accepts for that value (RFC 8259 grammar, white space
// ' ', '\t', '\n', '\r', nesting at most MaxDepth as encoding/json's
// scanner allows), and every method reports false on anything invalid.
// It decodes nothing it is not sure about: a string is handed back raw
// (the bytes between its quotes) with a plain flag that is true only when
// those bytes are the string's value (no escape, no byte >= 0x80); Int64
// reports false for any number not in canonical form. Callers fall back
// to encoding/json whenever the scanner says "not plain" or "not sure",
// and differentially test their layer against encoding/json.
package jsonscan

import (
	"bytes"
	"encoding/json"
)

// MaxDepth is encoding/json's nesting limit: deeper documents are invalid.
const MaxDepth = 10000

// Scanner is a position in a JSON document. Each value method skips the
// white space before the value, then consumes and validates the value.
type Scanner struct {
	b     []byte
	i     int
	depth int
}

// New returns a scanner at the start of b.
func New(b []byte) Scanner { return Scanner{b: b} }

// Pos is the offset of the next unread byte.
func (s *Scanner) Pos() int { return s.i }

// Since returns the input from offset start to the current position.
func (s *Scanner) Since(start int) []byte { return s.b[start:s.i] }

// Peek skips white space and returns the next byte, or 0 at the end.
func (s *Scanner) Peek() byte {
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// AtEnd skips white space and reports whether the input is exhausted.
func (s *Scanner) AtEnd() bool {
	s.Peek()
	return s.i == len(s.b)
}

// Literal consumes lit (true, false or null) if it is next.
func (s *Scanner) Literal(lit string) bool {
	s.Peek()
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// Null consumes a null if one is next.
func (s *Scanner) Null() bool { return s.Literal("null") }

// Bool consumes true or false; ok is false (nothing consumed) otherwise.
func (s *Scanner) Bool() (v, ok bool) {
	if s.Literal("true") {
		return true, true
	}
	return false, s.Literal("false")
}

// Object consumes an object, calling member for each key (raw bytes
// between the quotes, plain as for String) with the scanner at the
// member's value, which member must consume. A nil member skips values.
func (s *Scanner) Object(member func(key []byte, plain bool) bool) bool {
	if s.Peek() != '{' || s.depth >= MaxDepth {
		return false
	}
	s.depth++
	s.i++
	if s.Peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		key, plain, ok := s.String()
		if !ok || s.Peek() != ':' {
			return false
		}
		s.i++
		if member != nil {
			ok = member(key, plain)
		} else {
			ok = s.Skip()
		}
		if !ok {
			return false
		}
		switch s.Peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// Array consumes an array, calling elem at each element, which elem must
// consume. A nil elem skips elements.
func (s *Scanner) Array(elem func() bool) bool {
	if s.Peek() != '[' || s.depth >= MaxDepth {
		return false
	}
	s.depth++
	s.i++
	if s.Peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		var ok bool
		if elem != nil {
			ok = elem()
		} else {
			ok = s.Skip()
		}
		if !ok {
			return false
		}
		switch s.Peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// String consumes a string and returns its raw bytes between the quotes
// (aliasing the input); plain reports that they contain no escape and no
// byte >= 0x80, so that they are the string's value.
func (s *Scanner) String() (raw []byte, plain, ok bool) {
	if s.Peek() != '"' {
		return nil, false, false
	}
	b, start := s.b, s.i+1
	plain = true
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s.i = j + 1
			return b[start:j], plain, true
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			plain = false
		case c == '\\':
			plain = false
			j++
			if j >= len(b) {
				return nil, false, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) || !isHex(b[j+1]) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) {
					return nil, false, false
				}
				j += 4
			default:
				return nil, false, false
			}
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits returns the offset past the run of digits at j.
func (s *Scanner) digits(j int) int {
	for j < len(s.b) && isDigit(s.b[j]) {
		j++
	}
	return j
}

// Number consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *Scanner) Number() bool {
	s.Peek()
	b, j := s.b, s.i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && '1' <= b[j] && b[j] <= '9':
		j = s.digits(j)
	default:
		return false
	}
	if j < len(b) && b[j] == '.' {
		if j++; j >= len(b) || !isDigit(b[j]) {
			return false
		}
		j = s.digits(j)
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		if j++; j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) || !isDigit(b[j]) {
			return false
		}
		j = s.digits(j)
	}
	s.i = j
	return true
}

// Int64 consumes an integer in canonical form (-?(0|[1-9][0-9]*), at most
// 18 digits, so it cannot overflow, and no fraction or exponent). It
// reports false, at an unspecified position, for any other value: the
// caller is not sure and falls back.
func (s *Scanner) Int64() (int64, bool) {
	s.Peek()
	b, j := s.b, s.i
	neg := j < len(b) && b[j] == '-'
	if neg {
		j++
	}
	start := j
	var n int64
	for ; j < len(b) && isDigit(b[j]); j++ {
		n = n*10 + int64(b[j]-'0')
	}
	if d := j - start; d == 0 || d > 18 || d > 1 && b[start] == '0' {
		return 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, false
	}
	s.i = j
	if neg {
		n = -n
	}
	return n, true
}

// Skip consumes any one value, validating it.
func (s *Scanner) Skip() bool {
	switch c := s.Peek(); {
	case c == '{':
		return s.Object(nil)
	case c == '[':
		return s.Array(nil)
	case c == '"':
		_, _, ok := s.String()
		return ok
	case c == 't':
		return s.Literal("true")
	case c == 'f':
		return s.Literal("false")
	case c == 'n':
		return s.Literal("null")
	case c == '-' || isDigit(c):
		return s.Number()
	}
	return false
}

// Raw consumes any one value, validating it, and returns its bytes (a
// view into the input, without the white space around it).
func (s *Scanner) Raw() ([]byte, bool) {
	s.Peek()
	start := s.i
	if !s.Skip() {
		return nil, false
	}
	return s.b[start:s.i], true
}

// StringOrNull consumes a plain string into *dst, or a null, which leaves
// *dst as it was (as encoding/json does). Anything else, a string with
// escapes included, reports false: the caller is not sure.
func (s *Scanner) StringOrNull(dst *string) bool {
	if s.Null() {
		return true
	}
	raw, plain, ok := s.String()
	if ok && plain {
		*dst = string(raw)
	}
	return ok && plain
}

// BoolOrNull consumes true or false into *dst, or a null, which leaves
// *dst as it was. Anything else reports false.
func (s *Scanner) BoolOrNull(dst *bool) bool {
	if s.Null() {
		return true
	}
	v, ok := s.Bool()
	if ok {
		*dst = v
	}
	return ok
}

// Int64OrNull consumes a canonical integer (Int64) into *dst, or a null,
// which leaves *dst as it was. Anything else reports false.
func (s *Scanner) Int64OrNull(dst *int64) bool {
	if s.Null() {
		return true
	}
	v, ok := s.Int64()
	if ok {
		*dst = v
	}
	return ok
}

// Valid reports whether b is one JSON value with optional white space
// around it, as json.Valid does.
func Valid(b []byte) bool {
	s := New(b)
	return s.Skip() && s.AtEnd()
}

// KeyIs reports whether an object key (raw and plain as Object gives
// them) names the struct field whose name is field (ASCII) the way
// encoding/json matches it: exactly or ignoring case. A key that is not
// plain is unquoted by encoding/json first.
func KeyIs(raw []byte, plain bool, field string) bool {
	if !plain {
		var k string
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) != nil {
			return false
		}
		raw = []byte(k)
	} else if len(raw) != len(field) {
		return false
	}
	return bytes.EqualFold(raw, []byte(field))
}

package broker

import "encoding/json"

// This file decodes an Events API body into eventsBody without
// encoding/json's reflection: one validating pass over the body that keeps
// only the fields the broker reads. It handles the bodies Slack sends; any
// body it is not sure about — an escape or a non-ASCII byte in a key or in
// a kept string, a kept field twice, a kept field of another JSON type,
// deep nesting, invalid JSON — goes to json.Unmarshal, so the result (and
// the error text of a bad body) is what json.Unmarshal gives
// (eventsjson_test.go checks this differentially).

// decodeEventsBody is json.Unmarshal(body, ev) for a zero ev.
func decodeEventsBody(body []byte, ev *eventsBody) error {
	if (&jsonScan{b: body}).eventsBody(ev) {
		return nil
	}
	*ev = eventsBody{}
	return json.Unmarshal(body, ev) //nolint:wrapcheck // the caller describes it with jsonErrorText
}

// jsonScan is a position in a JSON document. Every method validates what it
// consumes and returns false when the document is invalid or when it cannot
// tell that json.Unmarshal would decode it the same way.
type jsonScan struct {
	b     []byte
	i     int
	depth int
}

// maxScanDepth bounds nesting on the fast path (deeper goes to
// encoding/json, which has its own limit).
const maxScanDepth = 64

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

// eventsBody decodes the whole document into ev.
func (s *jsonScan) eventsBody(ev *eventsBody) bool {
	var seen uint8
	ok := s.object(func(key []byte) bool {
		var bit uint8
		var r bool
		switch {
		case foldEq(key, "type"):
			bit, r = 1<<0, s.str(&ev.Type)
		case foldEq(key, "challenge"):
			bit, r = 1<<1, s.str(&ev.Challenge)
		case foldEq(key, "team_id"):
			bit, r = 1<<2, s.str(&ev.TeamID)
		case foldEq(key, "enterprise_id"):
			bit, r = 1<<3, s.str(&ev.EnterpriseID)
		case foldEq(key, "is_enterprise_install"):
			bit, r = 1<<4, s.boolean(&ev.IsEnterpriseInstall)
		case foldEq(key, "event_id"):
			bit, r = 1<<5, s.str(&ev.EventID)
		case foldEq(key, "event"):
			bit, r = 1<<6, s.event(ev)
		case foldEq(key, "authorizations"):
			bit, r = 1<<7, s.authorizations(ev)
		default:
			return s.skip()
		}
		if seen&bit != 0 {
			return false // a repeated field: leave merging rules to encoding/json
		}
		seen |= bit
		return r
	})
	if !ok {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *jsonScan) event(ev *eventsBody) bool {
	if s.null() {
		return true
	}
	var seen uint8
	return s.object(func(key []byte) bool {
		var bit uint8
		var r bool
		switch {
		case foldEq(key, "type"):
			bit, r = 1<<0, s.str(&ev.Event.Type)
		case foldEq(key, "tokens"):
			bit, r = 1<<1, s.tokens(ev)
		default:
			return s.skip()
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return r
	})
}

func (s *jsonScan) tokens(ev *eventsBody) bool {
	if s.null() {
		return true
	}
	seen := false
	return s.object(func(key []byte) bool {
		if !foldEq(key, "bot") {
			return s.skip()
		}
		if seen {
			return false
		}
		seen = true
		if s.null() {
			return true
		}
		bot := []string{}
		ok := s.array(func() bool {
			var v string
			if s.peek() != '"' || !s.str(&v) {
				return false
			}
			bot = append(bot, v)
			return true
		})
		ev.Event.Tokens.Bot = bot
		return ok
	})
}

func (s *jsonScan) authorizations(ev *eventsBody) bool {
	if s.null() {
		return true
	}
	auths := []eventsAuth{}
	ok := s.array(func() bool {
		if s.peek() != '{' {
			return false
		}
		auths = append(auths, eventsAuth{})
		e := &auths[len(auths)-1]
		var seen uint8
		return s.object(func(key []byte) bool {
			var bit uint8
			var r bool
			switch {
			case foldEq(key, "team_id"):
				bit, r = 1<<0, s.str(&e.TeamID)
			case foldEq(key, "enterprise_id"):
				bit, r = 1<<1, s.str(&e.EnterpriseID)
			case foldEq(key, "is_enterprise_install"):
				bit, r = 1<<2, s.boolean(&e.IsEnterpriseInstall)
			default:
				return s.skip()
			}
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			return r
		})
	})
	ev.Authorizations = auths
	return ok
}

func (s *jsonScan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// null consumes a JSON null if one is next.
func (s *jsonScan) null() bool {
	if s.peek() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// object consumes an object, calling member with each key (its raw bytes,
// which are the key itself: keys with escapes or non-ASCII bytes are
// refused) and the position at its value, which member must consume.
func (s *jsonScan) object(member func(key []byte) bool) bool {
	if s.peek() != '{' || s.depth >= maxScanDepth {
		return false
	}
	s.depth++
	s.i++
	if s.peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		key, plain, ok := s.rawString()
		if !ok || !plain {
			return false
		}
		if s.peek() != ':' {
			return false
		}
		s.i++
		if !member(key) {
			return false
		}
		switch s.peek() {
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

// array consumes an array, calling elem at each element, which elem must
// consume.
func (s *jsonScan) array(elem func() bool) bool {
	if s.peek() != '[' || s.depth >= maxScanDepth {
		return false
	}
	s.depth++
	s.i++
	if s.peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch s.peek() {
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

// rawString consumes a string and returns its raw bytes between the quotes;
// plain reports that they are printable ASCII without escapes, so that they
// are the string's value.
func (s *jsonScan) rawString() (raw []byte, plain, ok bool) {
	start := s.i + 1
	plain = true
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return s.b[start:i], plain, true
		case c < 0x20:
			return nil, false, false
		case c >= 0x80:
			plain = false
		case c == '\\':
			plain = false
			i++
			if i >= len(s.b) {
				return nil, false, false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				i += 4
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

// str consumes a string or null into *dst (null leaves it unchanged, as
// encoding/json does). A string with escapes or non-ASCII bytes is refused.
func (s *jsonScan) str(dst *string) bool {
	if s.null() {
		return true
	}
	if s.peek() != '"' {
		return false
	}
	raw, plain, ok := s.rawString()
	if !ok || !plain {
		return false
	}
	*dst = string(raw)
	return true
}

// boolean consumes true, false or null into *dst.
func (s *jsonScan) boolean(dst *bool) bool {
	if s.null() {
		return true
	}
	switch rest := s.b[s.i:]; {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*dst = true
		s.i += 4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*dst = false
		s.i += 5
	default:
		return false
	}
	return true
}

// skip consumes any value, validating it.
func (s *jsonScan) skip() bool {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) bool { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, _, ok := s.rawString()
		return ok
	case c == 't':
		var b bool
		return s.boolean(&b)
	case c == 'f':
		var b bool
		return s.boolean(&b)
	case c == 'n':
		return s.null()
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

// number consumes a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *jsonScan) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return true
}

// foldEq reports whether key equals name ignoring ASCII case, the way
// encoding/json matches an ASCII key to a field name. name is lower case.
func foldEq(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i := range key {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

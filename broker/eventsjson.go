package broker

import (
	"encoding/json"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
)

// This file decodes an Events API body into eventsBody without
// encoding/json's reflection: one validating pass (internal/jsonscan) that
// keeps only the fields the broker reads. Any body it is not sure about —
// an escape or a non-ASCII byte in a key or in a kept string, a kept field
// twice, a kept field of another JSON type, invalid JSON — goes to
// json.Unmarshal, so the result (and the error text of a bad body) is what
// json.Unmarshal gives (eventsjson_test.go checks this differentially).

// decodeEventsBody is json.Unmarshal(body, ev) for a zero ev.
func decodeEventsBody(body []byte, ev *eventsBody) error {
	if decodeEventsFast(body, ev) {
		return nil
	}
	*ev = eventsBody{}
	return json.Unmarshal(body, ev) //nolint:wrapcheck // the caller describes it with jsonErrorText
}

// decodeEventsFast decodes body into ev, or reports false when it is not
// sure json.Unmarshal would decode it the same way (ev is then partial).
func decodeEventsFast(body []byte, ev *eventsBody) bool {
	s := jsonscan.New(body)
	return scanFields(&s, func(key []byte) (uint, bool) {
		switch {
		case jsonscan.KeyIs(key, true, "type"):
			return 1 << 0, s.StringOrNull(&ev.Type)
		case jsonscan.KeyIs(key, true, "challenge"):
			return 1 << 1, s.StringOrNull(&ev.Challenge)
		case jsonscan.KeyIs(key, true, "team_id"):
			return 1 << 2, s.StringOrNull(&ev.TeamID)
		case jsonscan.KeyIs(key, true, "enterprise_id"):
			return 1 << 3, s.StringOrNull(&ev.EnterpriseID)
		case jsonscan.KeyIs(key, true, "is_enterprise_install"):
			return 1 << 4, s.BoolOrNull(&ev.IsEnterpriseInstall)
		case jsonscan.KeyIs(key, true, "event_id"):
			return 1 << 5, s.StringOrNull(&ev.EventID)
		case jsonscan.KeyIs(key, true, "event"):
			return 1 << 6, s.Null() || scanFields(&s, func(key []byte) (uint, bool) {
				switch {
				case jsonscan.KeyIs(key, true, "type"):
					return 1 << 0, s.StringOrNull(&ev.Event.Type)
				case jsonscan.KeyIs(key, true, "tokens"):
					return 1 << 1, s.Null() || scanFields(&s, func(key []byte) (uint, bool) {
						if !jsonscan.KeyIs(key, true, "bot") {
							return 0, s.Skip()
						}
						return 1, botTokens(&s, ev)
					})
				}
				return 0, s.Skip()
			})
		case jsonscan.KeyIs(key, true, "authorizations"):
			return 1 << 7, authorizations(&s, ev)
		}
		return 0, s.Skip()
	}) && s.AtEnd()
}

// scanFields consumes an object whose keys are plain, calling field for each:
// field consumes the value and returns the kept field's bit (0: skipped).
// A kept field twice is refused, leaving merging rules to encoding/json.
func scanFields(s *jsonscan.Scanner, field func(key []byte) (bit uint, ok bool)) bool {
	var seen uint
	return s.Object(func(key []byte, plain bool) bool {
		if !plain {
			return false
		}
		bit, ok := field(key)
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
}

func botTokens(s *jsonscan.Scanner, ev *eventsBody) bool {
	if s.Null() {
		return true
	}
	bot := []string{}
	ok := s.Array(func() bool {
		var v string
		if s.Peek() != '"' || !s.StringOrNull(&v) {
			return false
		}
		bot = append(bot, v)
		return true
	})
	ev.Event.Tokens.Bot = bot
	return ok
}

func authorizations(s *jsonscan.Scanner, ev *eventsBody) bool {
	if s.Null() {
		return true
	}
	auths := []eventsAuth{}
	ok := s.Array(func() bool {
		if s.Peek() != '{' {
			return false
		}
		auths = append(auths, eventsAuth{})
		e := &auths[len(auths)-1]
		return scanFields(s, func(key []byte) (uint, bool) {
			switch {
			case jsonscan.KeyIs(key, true, "team_id"):
				return 1 << 0, s.StringOrNull(&e.TeamID)
			case jsonscan.KeyIs(key, true, "enterprise_id"):
				return 1 << 1, s.StringOrNull(&e.EnterpriseID)
			case jsonscan.KeyIs(key, true, "is_enterprise_install"):
				return 1 << 2, s.BoolOrNull(&e.IsEnterpriseInstall)
			}
			return 0, s.Skip()
		})
	})
	ev.Authorizations = auths
	return ok
}

package bridge

import (
	"github.com/sealrelay/sealrelay/internal/jsonscan"
	"github.com/sealrelay/sealrelay/protocol"
)

// decodePull decodes a pull answer in the shape the broker writes it
// (json.Marshal of protocol.PullResponse) in one pass: json.Unmarshal
// scans the whole answer twice (validation, then decoding), and a pull
// answer is mostly base64 text. It accepts only a strict subset of JSON —
// the exact field names, strings of ASCII without escapes,
// integers without fraction or exponent, "messages" once — and in it it
// decodes exactly what json.Unmarshal decodes. On anything else it leaves
// *out zero and reports false, and the caller takes json.Unmarshal.
func decodePull(data []byte, out *protocol.PullResponse) bool {
	s := jsonscan.New(data)
	if !pullAnswerFields(&s, out) || !s.AtEnd() {
		*out = protocol.PullResponse{}
		return false
	}
	return true
}

// pullAnswerFields decodes the answer object (exact keys only).
func pullAnswerFields(s *jsonscan.Scanner, out *protocol.PullResponse) bool {
	seenMessages := false
	return s.Object(func(key []byte, plain bool) bool {
		switch {
		case !plain:
			return false
		case string(key) == "ok":
			v, ok := s.Bool()
			out.OK = v
			return ok
		case string(key) == "messages" && !seenMessages:
			seenMessages = true // twice: json.Unmarshal would merge the two
			return pullMessages(s, out)
		}
		return false
	})
}

func pullMessages(s *jsonscan.Scanner, out *protocol.PullResponse) bool {
	if s.Null() {
		out.Messages = nil
		return true
	}
	out.Messages = make([]protocol.InboxMessage, 0, 16)
	var org, ws string
	return s.Array(func() bool {
		m := protocol.InboxMessage{OrgID: org, WorkspaceID: ws}
		if s.Peek() != '{' || !pullMessage(s, &m) {
			return false
		}
		org, ws = m.OrgID, m.WorkspaceID
		out.Messages = append(out.Messages, m)
		return true
	})
}

// pullMessage decodes one message into m, whose OrgID and WorkspaceID hold
// the previous message's (reused when equal, as org and workspace ids
// repeat in every message; a message without them gets them cleared).
func pullMessage(s *jsonscan.Scanner, m *protocol.InboxMessage) bool {
	prevOrg, prevWS := m.OrgID, m.WorkspaceID
	m.OrgID, m.WorkspaceID = "", ""
	str := func(prev string) (string, bool) {
		b, plain, ok := s.String()
		if !ok || !plain {
			return "", false
		}
		if string(b) == prev {
			return prev, true
		}
		return string(b), true
	}
	return s.Object(func(key []byte, plain bool) bool {
		var ok bool
		switch string(key) {
		case "message_id":
			m.MessageID, ok = str("")
		case "org_id":
			m.OrgID, ok = str(prevOrg)
		case "workspace_id":
			m.WorkspaceID, ok = str(prevWS)
		case "encrypted":
			m.Encrypted, ok = str("")
		case "broker_timestamp":
			m.BrokerTimestamp, ok = s.Int64()
		case "broker_signature":
			m.BrokerSignature, ok = str("")
		}
		return ok && plain
	})
}

package bridge

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"

	"github.com/sealrelay/sealrelay/protocol"
)

// Event is one inbound message after verification and decryption: the
// generic envelope plus the broker's message id and a thread id usable with
// the local API's POST /reply. It is the JSON object of each SSE event.
type Event struct {
	// MessageID is the broker's id of the message (unique per inbox).
	MessageID string `json:"message_id"`
	// Source is the envelope source ("slack", "system", ...).
	Source string `json:"source"`
	// Type is the Slack payload type: event_callback, block_actions,
	// view_submission, slash_command, ...
	Type string `json:"type"`
	// BrokerTimestamp is when the broker queued the message (Unix seconds).
	BrokerTimestamp int64 `json:"broker_timestamp"`
	// Payload is the Slack request body as JSON (slash commands: the form
	// fields as an object).
	Payload json.RawMessage `json:"payload"`
	// ThreadID names the conversation the event belongs to ("<channel>:<ts>"
	// or "<channel>"); POST /reply with it answers in that thread.
	ThreadID string `json:"thread_id,omitempty"`
}

var (
	channelPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{1,40}$`)
	tsPattern      = regexp.MustCompile(`^[0-9]{1,20}\.[0-9]{1,20}$`)
)

// threadPayload picks the fields that locate a conversation in the Slack
// payload shapes sealrelay carries.
type threadPayload struct {
	// Events API
	Event *struct {
		Channel  string `json:"channel"`
		TS       string `json:"ts"`
		ThreadTS string `json:"thread_ts"`
		Item     *struct {
			Channel string `json:"channel"`
			TS      string `json:"ts"`
		} `json:"item"`
	} `json:"event"`
	// Interactivity
	Channel *struct {
		ID string `json:"id"`
	} `json:"channel"`
	Container *struct {
		ChannelID string `json:"channel_id"`
		MessageTS string `json:"message_ts"`
		ThreadTS  string `json:"thread_ts"`
	} `json:"container"`
	Message *struct {
		TS       string `json:"ts"`
		ThreadTS string `json:"thread_ts"`
	} `json:"message"`
	// Slash commands (form fields)
	ChannelID string `json:"channel_id"`
	// EventID is the Slack event id of an Events API callback.
	EventID string `json:"event_id"`
	// APIAppID names the Slack app (Socket Mode hello default).
	APIAppID string `json:"api_app_id"`
}

// payloadInfo is what the bridge reads from a Slack payload, in one parse.
type payloadInfo struct {
	threadID string
	// eventID is the Slack event id of an Events API callback ("" when
	// absent or longer than maxEventIDLen).
	eventID string
	appID   string
}

// maxEventIDLen bounds the Slack event ids the bridge remembers.
const maxEventIDLen = 128

// ThreadIDFor derives the thread id of a Slack payload, or "" when the
// payload names no channel.
func ThreadIDFor(typ string, payload []byte) string {
	return inspectPayload(typ, payload).threadID
}

// inspectPayload parses a Slack payload once and returns its thread id,
// Slack event id and app id.
func inspectPayload(typ string, payload []byte) payloadInfo {
	var p threadPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			// A field of an unexpected shape: no thread, but the rest
			// (the app id) was still read.
			return payloadInfo{appID: p.APIAppID}
		}
		return payloadInfo{}
	}
	info := payloadInfo{appID: p.APIAppID}
	if typ == protocol.TypeEventCallback && len(p.EventID) <= maxEventIDLen {
		info.eventID = p.EventID
	}
	var ch, ts string
	switch {
	case p.Event != nil:
		ch, ts = p.Event.Channel, first(p.Event.ThreadTS, p.Event.TS)
		if ch == "" && p.Event.Item != nil {
			ch, ts = p.Event.Item.Channel, p.Event.Item.TS
		}
	case p.Channel != nil || p.Container != nil:
		if p.Channel != nil {
			ch = p.Channel.ID
		}
		if p.Container != nil {
			ch = first(ch, p.Container.ChannelID)
			ts = first(p.Container.ThreadTS, p.Container.MessageTS)
		}
		if p.Message != nil {
			ts = first(p.Message.ThreadTS, ts, p.Message.TS)
		}
	default:
		ch = p.ChannelID
	}
	switch {
	case !channelPattern.MatchString(ch):
	case !tsPattern.MatchString(ts):
		info.threadID = ch
	default:
		info.threadID = ch + ":" + ts
	}
	return info
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// ParseThreadID splits a thread id into channel and thread ts (empty for a
// channel-level id). It reports false for a malformed id.
func ParseThreadID(id string) (channel, threadTS string, ok bool) {
	ch, ts, hasTS := strings.Cut(id, ":")
	if !channelPattern.MatchString(ch) {
		return "", "", false
	}
	if hasTS && !tsPattern.MatchString(ts) {
		return "", "", false
	}
	return ch, ts, true
}

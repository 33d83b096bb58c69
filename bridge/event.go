package bridge

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
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

// isChannelID reports whether s is a Slack channel id: ^[CGD][A-Z0-9]{1,40}$.
func isChannelID(s string) bool {
	if len(s) < 2 || len(s) > 41 || (s[0] != 'C' && s[0] != 'G' && s[0] != 'D') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// isMessageTS reports whether s is a Slack message ts: ^[0-9]{1,20}\.[0-9]{1,20}$.
func isMessageTS(s string) bool {
	dot := strings.IndexByte(s, '.')
	return dot >= 1 && dot <= 20 && allDigits(s[:dot]) && len(s)-dot-1 >= 1 && len(s)-dot-1 <= 20 && allDigits(s[dot+1:])
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// threadPayload picks the fields that locate a conversation in the Slack
// payload shapes sealrelay carries: json.Unmarshal decodes a payload into
// it when payloadScan is not sure.
type threadPayload struct {
	// Events API
	Event *threadEvent `json:"event"`
	// Interactivity
	Channel   *threadChannel   `json:"channel"`
	Container *threadContainer `json:"container"`
	Message   *threadMessage   `json:"message"`
	// Slash commands (form fields)
	ChannelID string `json:"channel_id"`
	// EventID is the Slack event id of an Events API callback.
	EventID string `json:"event_id"`
	// APIAppID names the Slack app (Socket Mode hello default).
	APIAppID string `json:"api_app_id"`
}

// threadEvent is the part of an Events API "event" the bridge reads.
type threadEvent struct {
	Channel  string      `json:"channel"`
	TS       string      `json:"ts"`
	ThreadTS string      `json:"thread_ts"`
	Item     *threadItem `json:"item"`
}

// threadItem is the item of a reaction, pin or star event.
type threadItem struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// threadChannel is an interactivity payload's channel.
type threadChannel struct {
	ID string `json:"id"`
}

// threadContainer is an interactivity payload's container.
type threadContainer struct {
	ChannelID string `json:"channel_id"`
	MessageTS string `json:"message_ts"`
	ThreadTS  string `json:"thread_ts"`
}

// threadMessage is the message an interaction happened on.
type threadMessage struct {
	TS       string `json:"ts"`
	ThreadTS string `json:"thread_ts"`
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
// Slack event id and app id. A payload with a field of an unexpected shape
// (json.Unmarshal's *UnmarshalTypeError) gives only its app id; one that is
// not JSON gives nothing.
func inspectPayload(typ string, payload []byte) payloadInfo {
	var sc payloadScan
	typeErr, ok := sc.scan(payload)
	if !ok {
		if sc.f, typeErr, ok = decodePayloadJSON(payload); !ok {
			return payloadInfo{}
		}
	}
	if typeErr {
		// A field of an unexpected shape: no thread, but the rest
		// (the app id) was still read.
		return payloadInfo{appID: sc.f.appID}
	}
	return sc.f.info(typ)
}

// decodePayloadJSON decodes payload with json.Unmarshal: typeErr reports
// an *UnmarshalTypeError, ok false any other error.
func decodePayloadJSON(payload []byte) (f payloadFields, typeErr, ok bool) {
	var p threadPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		var ute *json.UnmarshalTypeError
		return fieldsOf(&p), true, errors.As(err, &ute)
	}
	return fieldsOf(&p), false, true
}

// payloadFields is a decoded threadPayload without pointers: each nested
// object is a value (zero when absent) and a flag saying whether it is
// present (a non-nil pointer). ev.Item is always nil: item and hasItem hold
// it.
type payloadFields struct {
	ev                                   threadEvent
	item                                 threadItem
	ch                                   threadChannel
	co                                   threadContainer
	msg                                  threadMessage
	channelID, eventID, appID            string
	hasEv, hasItem, hasCh, hasCo, hasMsg bool
}

// fieldsOf returns the payloadFields of p.
func fieldsOf(p *threadPayload) payloadFields {
	f := payloadFields{channelID: p.ChannelID, eventID: p.EventID, appID: p.APIAppID}
	if p.Event != nil {
		f.ev, f.hasEv = *p.Event, true
		f.ev.Item = nil
		if p.Event.Item != nil {
			f.item, f.hasItem = *p.Event.Item, true
		}
	}
	if p.Channel != nil {
		f.ch, f.hasCh = *p.Channel, true
	}
	if p.Container != nil {
		f.co, f.hasCo = *p.Container, true
	}
	if p.Message != nil {
		f.msg, f.hasMsg = *p.Message, true
	}
	return f
}

// info derives what the bridge reads from a payload decoded without error.
func (f *payloadFields) info(typ string) payloadInfo {
	info := payloadInfo{appID: f.appID}
	if typ == protocol.TypeEventCallback && len(f.eventID) <= maxEventIDLen {
		info.eventID = f.eventID
	}
	var ch, ts string
	switch {
	case f.hasEv:
		ch, ts = f.ev.Channel, first(f.ev.ThreadTS, f.ev.TS)
		if ch == "" && f.hasItem {
			ch, ts = f.item.Channel, f.item.TS
		}
	case f.hasCh || f.hasCo:
		if f.hasCh {
			ch = f.ch.ID
		}
		if f.hasCo {
			ch = first(ch, f.co.ChannelID)
			ts = first(f.co.ThreadTS, f.co.MessageTS)
		}
		if f.hasMsg {
			ts = first(f.msg.ThreadTS, ts, f.msg.TS)
		}
	default:
		ch = f.channelID
	}
	switch {
	case !isChannelID(ch):
	case !isMessageTS(ts):
		info.threadID = ch
	default:
		info.threadID = ch + ":" + ts
	}
	return info
}

// payloadScan decodes a Slack payload into payloadFields without
// encoding/json's reflection: one validating pass (internal/jsonscan) that
// reads only the fields threadPayload keeps, with json.Unmarshal's rules —
// keys match exactly or ignoring ASCII case, a key given twice takes its
// last value (a nested object merges into the one before it), null leaves
// a string as it was and clears a nested object, and a kept field of
// another JSON type is a type error that does not stop the decoding.
type payloadScan struct {
	s       jsonscan.Scanner
	typeErr bool
	f       payloadFields
}

// scan decodes payload into sc.f as json.Unmarshal would into a zero
// threadPayload (fieldsOf); typeErr is true where json.Unmarshal would
// return an *UnmarshalTypeError (then only sc.f.appID is sure to be what
// it leaves). ok is false when the scan is not sure — an escape or a
// non-ASCII byte in a key of an object it reads or in a kept string, or
// invalid JSON —: the caller then takes json.Unmarshal, which decides.
func (sc *payloadScan) scan(payload []byte) (typeErr, ok bool) {
	sc.s = jsonscan.New(payload)
	switch sc.s.Peek() {
	case '{':
		ok = sc.s.Object(sc.top)
	case 'n':
		ok = sc.s.Null() // null decodes into nothing, without error
	default:
		sc.typeErr = true // a payload that is not an object
		ok = sc.s.Skip()
	}
	if !ok || !sc.s.AtEnd() {
		return false, false
	}
	return sc.typeErr, true
}

func (sc *payloadScan) top(key []byte, plain bool) bool {
	f := &sc.f
	switch {
	case !plain:
		return false // encoding/json unquotes and folds it: leave it to it
	case jsonscan.KeyIs(key, true, "event"):
		ok := scanObject(sc, &f.hasEv, &f.ev, sc.event)
		if !f.hasEv {
			f.item, f.hasItem = threadItem{}, false // its item went with it
		}
		return ok
	case jsonscan.KeyIs(key, true, "channel"):
		return scanObject(sc, &f.hasCh, &f.ch, sc.channel)
	case jsonscan.KeyIs(key, true, "container"):
		return scanObject(sc, &f.hasCo, &f.co, sc.container)
	case jsonscan.KeyIs(key, true, "message"):
		return scanObject(sc, &f.hasMsg, &f.msg, sc.message)
	case jsonscan.KeyIs(key, true, "channel_id"):
		return sc.str(&f.channelID)
	case jsonscan.KeyIs(key, true, "event_id"):
		return sc.str(&f.eventID)
	case jsonscan.KeyIs(key, true, "api_app_id"):
		return sc.str(&f.appID)
	}
	return sc.s.Skip()
}

func (sc *payloadScan) event(key []byte, plain bool) bool {
	switch {
	case !plain:
		return false
	case jsonscan.KeyIs(key, true, "channel"):
		return sc.str(&sc.f.ev.Channel)
	case jsonscan.KeyIs(key, true, "ts"):
		return sc.str(&sc.f.ev.TS)
	case jsonscan.KeyIs(key, true, "thread_ts"):
		return sc.str(&sc.f.ev.ThreadTS)
	case jsonscan.KeyIs(key, true, "item"):
		return scanObject(sc, &sc.f.hasItem, &sc.f.item, sc.itemField)
	}
	return sc.s.Skip()
}

func (sc *payloadScan) itemField(key []byte, plain bool) bool {
	switch {
	case !plain:
		return false
	case jsonscan.KeyIs(key, true, "channel"):
		return sc.str(&sc.f.item.Channel)
	case jsonscan.KeyIs(key, true, "ts"):
		return sc.str(&sc.f.item.TS)
	}
	return sc.s.Skip()
}

func (sc *payloadScan) channel(key []byte, plain bool) bool {
	switch {
	case !plain:
		return false
	case jsonscan.KeyIs(key, true, "id"):
		return sc.str(&sc.f.ch.ID)
	}
	return sc.s.Skip()
}

func (sc *payloadScan) container(key []byte, plain bool) bool {
	switch {
	case !plain:
		return false
	case jsonscan.KeyIs(key, true, "channel_id"):
		return sc.str(&sc.f.co.ChannelID)
	case jsonscan.KeyIs(key, true, "message_ts"):
		return sc.str(&sc.f.co.MessageTS)
	case jsonscan.KeyIs(key, true, "thread_ts"):
		return sc.str(&sc.f.co.ThreadTS)
	}
	return sc.s.Skip()
}

func (sc *payloadScan) message(key []byte, plain bool) bool {
	switch {
	case !plain:
		return false
	case jsonscan.KeyIs(key, true, "ts"):
		return sc.str(&sc.f.msg.TS)
	case jsonscan.KeyIs(key, true, "thread_ts"):
		return sc.str(&sc.f.msg.ThreadTS)
	}
	return sc.s.Skip()
}

// str consumes a kept string: a plain string is stored, null leaves *dst
// as it was, any other value is a type error (skipped); a string that is
// not plain is "not sure".
func (sc *payloadScan) str(dst *string) bool {
	switch sc.s.Peek() {
	case 'n':
		return sc.s.Null()
	case '"':
		raw, plain, ok := sc.s.String()
		if !ok || !plain {
			return false
		}
		*dst = string(raw)
		return true
	}
	sc.typeErr = true
	return sc.s.Skip()
}

// scanObject consumes the value of a kept *T field, held in buf and
// present: null makes it absent and zero (json.Unmarshal sets the pointer
// nil); an object is decoded by member into buf (absent, buf is zero, as
// the new T json.Unmarshal allocates; present, it decodes into the T it
// has); any other value is a type error (skipped).
func scanObject[T any](sc *payloadScan, present *bool, buf *T, member func(key []byte, plain bool) bool) bool {
	switch sc.s.Peek() {
	case 'n':
		var zero T
		*buf, *present = zero, false
		return sc.s.Null()
	case '{':
		*present = true
		return sc.s.Object(member)
	}
	sc.typeErr = true
	return sc.s.Skip()
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
	if !isChannelID(ch) {
		return "", "", false
	}
	if hasTS && !isMessageTS(ts) {
		return "", "", false
	}
	return ch, ts, true
}

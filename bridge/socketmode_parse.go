package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxSocketAckSize bounds one message a Socket Mode client sends (an ack
// with its response payload): the 64 KiB answer limit of §8.2 plus room for
// the envelope id and JSON framing.
const MaxSocketAckSize = MaxRespondSize + 4<<10

// maxEnvelopeIDLen bounds the envelope ids the bridge accepts in acks.
const maxEnvelopeIDLen = 128

// socketAck is a Socket Mode client's ack: {"envelope_id": "...",
// "payload": ...}. Payload is nil when the ack carries none (or null).
type socketAck struct {
	EnvelopeID string
	Payload    json.RawMessage
}

var errSocketAck = errors.New("invalid Socket Mode ack")

// parseSocketAck parses one message of a Socket Mode client. It accepts a
// JSON object with a non-empty string envelope_id of at most 128 bytes and
// an optional payload of any JSON type; anything else is an error naming
// what is wrong (never echoing the message).
func parseSocketAck(data []byte) (socketAck, error) {
	if len(data) > MaxSocketAckSize {
		return socketAck{}, fmt.Errorf("%w: %d bytes, more than %d", errSocketAck, len(data), MaxSocketAckSize)
	}
	if !utf8.Valid(data) {
		return socketAck{}, fmt.Errorf("%w: not UTF-8", errSocketAck)
	}
	var raw struct {
		EnvelopeID *string          `json:"envelope_id"`
		Payload    json.RawMessage  `json:"payload"`
		Type       *json.RawMessage `json:"type"`
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return socketAck{}, fmt.Errorf("%w: not a JSON object", errSocketAck)
	}
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return socketAck{}, fmt.Errorf("%w: not a JSON object with a string envelope_id", errSocketAck)
	}
	if raw.EnvelopeID == nil || *raw.EnvelopeID == "" {
		return socketAck{}, fmt.Errorf("%w: envelope_id missing", errSocketAck)
	}
	if len(*raw.EnvelopeID) > maxEnvelopeIDLen {
		return socketAck{}, fmt.Errorf("%w: envelope_id longer than %d bytes", errSocketAck, maxEnvelopeIDLen)
	}
	ack := socketAck{EnvelopeID: *raw.EnvelopeID}
	if p := bytes.TrimSpace(raw.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		ack.Payload = append(json.RawMessage(nil), p...)
	}
	return ack, nil
}

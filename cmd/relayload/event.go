package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"time"
)

// Identities of the simulated sender.
const (
	loadAppID  = "A0RELAYLOAD"
	loadUserID = "U0RELAYLOAD"
	loadBotID  = "U0RELAYBOT"
)

// maxDeliveryBody caps a forwarded request or an SSE event the harness
// reads (the broker accepts 1 MiB bodies).
const maxDeliveryBody = 2 << 20

// channelID names channel n of the run (a valid Slack channel id).
func channelID(n int) string { return string(appendPadded([]byte("CRL"), n, 5)) }

// eventID names event n of run runID.
func eventID(runID string, n int) string {
	return string(appendPadded(append([]byte("EvRL"), runID...), n, 8))
}

// eventText is the message text: it carries the run, channel and sequence
// number so that a person reading a bridge's output can place it.
func eventText(runID string, channel, seq int) string {
	return fmt.Sprintf("<@%s> relayload run=%s ch=%d seq=%d", loadBotID, runID, channel, seq)
}

// appendPadded appends n (≥ 0) in decimal, zero-padded to width digits
// (fmt's %0*d).
func appendPadded(dst []byte, n, width int) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(n), 10)
	for i := len(d); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// jsonInString returns s escaped as encoding/json escapes it inside a
// string, without the quotes (escaping is per character, so pieces escaped
// apart join into the escape of the whole).
func jsonInString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b[1 : len(b)-1])
}

// bodyTemplate builds the Slack Events API app_mention callbacks of one
// run by appending into a caller's buffer: the bytes are exactly those
// json.Marshal gives for the callback (keys sorted, HTML-safe escaping),
// built without reflection or maps. It is read-only after
// newBodyTemplate, so posters share one.
type bodyTemplate struct {
	runID string
	// The constant pieces between the variable fields, in order.
	head, afterChannel, afterTS1, afterCh, afterSeq, afterTS2, idPrefix, afterID, afterTime string
}

// newBodyTemplate prepares the callbacks of run runID for team.
func newBodyTemplate(team, runID string) *bodyTemplate {
	teamJSON, _ := json.Marshal(team)
	run := jsonInString(runID)
	return &bodyTemplate{
		runID: runID,
		head: `{"api_app_id":"` + loadAppID + `","authorizations":[{"is_bot":true,"team_id":` + string(teamJSON) +
			`,"user_id":"` + loadBotID + `"}],"event":{"channel":"CRL`,
		afterChannel: `","event_ts":"`,
		afterTS1:     `","text":"` + jsonInString("<@"+loadBotID+"> relayload run=") + run + ` ch=`,
		afterCh:      ` seq=`,
		afterSeq:     `","ts":"`,
		afterTS2:     `","type":"app_mention","user":"` + loadUserID + `"},"event_id":"EvRL`,
		idPrefix:     "EvRL" + runID,
		afterID:      `","event_time":`,
		afterTime:    `,"team_id":` + string(teamJSON) + `,"token":"relayload","type":"event_callback"}`,
	}
}

// appendTS appends the message ts of event n posted at unix ("<s>.<n mod 10⁶>").
func appendTS(dst []byte, unix int64, n int) []byte {
	dst = strconv.AppendInt(dst, unix, 10)
	return appendPadded(append(dst, '.'), n%1_000_000, 6)
}

// appendBody appends the callback of event n (sequence number seq on
// channel ch) posted at unix time unix.
func (t *bodyTemplate) appendBody(dst []byte, n, ch, seq int, unix int64) []byte {
	dst = append(dst, t.head...)
	dst = appendPadded(dst, ch, 5)
	dst = append(dst, t.afterChannel...)
	dst = appendTS(dst, unix, n)
	dst = append(dst, t.afterTS1...)
	dst = strconv.AppendInt(dst, int64(ch), 10)
	dst = append(dst, t.afterCh...)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, t.afterSeq...)
	dst = appendTS(dst, unix, n)
	dst = append(dst, t.afterTS2...)
	dst = append(dst, t.runID...)
	dst = appendPadded(dst, n, 8)
	dst = append(dst, t.afterID...)
	dst = strconv.AppendInt(dst, unix, 10)
	return append(dst, t.afterTime...)
}

// appendEventID appends eventID(runID, n).
func (t *bodyTemplate) appendEventID(dst []byte, n int) []byte {
	return appendPadded(append(dst, t.idPrefix...), n, 8)
}

// eventBody builds the Slack Events API app_mention callback of event n
// (sequence number seq on channel ch) for team.
func eventBody(team, runID string, n, ch, seq int, now time.Time) []byte {
	return newBodyTemplate(team, runID).appendBody(nil, n, ch, seq, now.Unix())
}

// slackSigner computes Slack's v0 request signatures with one reused
// HMAC: "v0=" + hex(HMAC-SHA256(secret, "v0:<ts>:<body>")). Not safe for
// concurrent use (one per poster).
type slackSigner struct {
	mac hash.Hash
	sum []byte
	hdr []byte
}

func newSlackSigner(secret []byte) *slackSigner {
	return &slackSigner{mac: hmac.New(sha256.New, secret), sum: make([]byte, 0, sha256.Size), hdr: make([]byte, 0, 32)}
}

// appendSignature appends the X-Slack-Signature value of body sent at unix.
func (s *slackSigner) appendSignature(dst []byte, unix int64, body []byte) []byte {
	s.mac.Reset()
	s.hdr = append(strconv.AppendInt(append(s.hdr[:0], "v0:"...), unix, 10), ':')
	s.mac.Write(s.hdr)
	s.mac.Write(body)
	s.sum = s.mac.Sum(s.sum[:0])
	dst = append(dst, "v0="...)
	return hex.AppendEncode(dst, s.sum)
}

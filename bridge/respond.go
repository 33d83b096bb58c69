package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// MaxRespondSize bounds a synchronous answer sent to the broker (§8.2).
const MaxRespondSize = 64 << 10

// respondTimeout bounds one POST /api/inbox/respond.
const respondTimeout = 5 * time.Second

// heldFields are the §8.2 fields of a generic envelope whose Slack request
// the broker holds open for the agent's answer.
type heldFields struct {
	ResponseExpected bool
	RespondBy        int64 // Unix ms
}

// errAnswer marks an app answer that cannot be sent as a respond.
var errAnswer = errors.New("unusable answer")

// answerFromSocket turns a Socket Mode ack payload into the JSON object
// Slack should receive: an object as is, a string (a plain-text answer) as
// {"text": ...}; nil means no answer.
func answerFromSocket(p json.RawMessage) ([]byte, error) {
	p = bytes.TrimSpace(p)
	switch {
	case len(p) == 0 || bytes.Equal(p, []byte("null")):
		return nil, nil
	case p[0] == '{':
		return checkAnswer(p)
	case p[0] == '"':
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, fmt.Errorf("%w: payload is not a JSON string", errAnswer)
		}
		if s == "" {
			return nil, nil
		}
		return wrapText(s)
	default:
		return nil, fmt.Errorf("%w: payload is neither a JSON object nor a string", errAnswer)
	}
}

// answerFromHTTP turns the body of the local app's HTTP response into the
// JSON object Slack should receive: a JSON object as is, anything else as
// plain text wrapped as {"text": ...} (Bolt's ack('text')); an empty body
// means no answer.
func answerFromHTTP(body []byte) ([]byte, error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 {
		return nil, nil
	}
	if t[0] == '{' && json.Valid(t) {
		return checkAnswer(t)
	}
	if !utf8.Valid(t) {
		return nil, fmt.Errorf("%w: the response body is neither JSON nor UTF-8 text", errAnswer)
	}
	return wrapText(string(t))
}

func wrapText(s string) ([]byte, error) {
	b, err := json.Marshal(map[string]string{"text": s})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errAnswer, err)
	}
	return checkAnswer(b)
}

// checkAnswer verifies that b is one JSON object of at most MaxRespondSize.
func checkAnswer(b []byte) ([]byte, error) {
	if len(b) > MaxRespondSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errAnswer, len(b), MaxRespondSize)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object", errAnswer)
	}
	return b, nil
}

// answer sends the app's answer to a held message (§8.2) right away. It
// never fails the delivery: the app has the event. A late answer is still
// sent (the broker decides) and logged once as late.
func (b *Bridge) answer(ctx context.Context, p *prepared, answer []byte) {
	if !p.held.ResponseExpected || answer == nil {
		return
	}
	defer crypto.Wipe(answer)
	if p.held.RespondBy > 0 && b.cfg.Now().UnixMilli() > p.held.RespondBy {
		b.metrics.responds.WithLabelValues("late").Inc()
		b.log.Warn("the app answered after respond_by; Slack has probably already had an empty answer", "message_id", p.ev.MessageID, "type", p.ev.Type,
			"late_by", time.Duration(b.cfg.Now().UnixMilli()-p.held.RespondBy)*time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), respondTimeout)
	defer cancel()
	delivered, err := b.Respond(rctx, p.ev.MessageID, answer)
	switch {
	case err != nil:
		b.metrics.responds.WithLabelValues("error").Inc()
		b.log.Warn("sending the app's answer to the broker failed", "message_id", p.ev.MessageID, "err", err)
	case delivered:
		b.metrics.responds.WithLabelValues("delivered").Inc()
		b.log.Debug("answer delivered to Slack", "message_id", p.ev.MessageID)
	default:
		b.metrics.responds.WithLabelValues("not_delivered").Inc()
		b.log.Info("the broker did not pass the answer on (too late, another agent answered first, or the request was not held)", "message_id", p.ev.MessageID)
	}
}

// Respond sends answer (a JSON object of at most 64 KiB) as the synchronous
// answer to the held message messageID: POST /api/inbox/respond, encrypted
// with crypto_box under a fresh nonce and signed. It reports whether the
// broker passed it on to Slack.
func (b *Bridge) Respond(ctx context.Context, messageID string, answer []byte) (bool, error) {
	if _, err := checkAnswer(answer); err != nil {
		return false, err
	}
	ct, nonce, err := b.shared.Seal(answer)
	if err != nil {
		return false, fmt.Errorf("respond: %w", err)
	}
	ts := b.cfg.Now().Unix()
	encBody := base64.StdEncoding.EncodeToString(ct)
	nonceB64 := base64.StdEncoding.EncodeToString(nonce[:])
	sig := b.cfg.SigningKey.Sign(protocol.RespondSigningBytes(b.cfg.OrgID, ts, messageID, encBody, nonceB64))
	req, err := marshal(protocol.RespondRequest{
		OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, ProtocolVersion: protocol.Version,
		MessageID: messageID, EncryptedBody: encBody, Nonce: nonceB64, Timestamp: ts, Signature: protocol.EncodeSignature(sig),
	})
	if err != nil {
		return false, err
	}
	var resp protocol.RespondResponse
	if err := b.client.do(ctx, http.MethodPost, "/api/inbox/respond", b.accessToken(), req, respondTimeout, &resp); err != nil {
		return false, fmt.Errorf("respond: %w", err)
	}
	return resp.Delivered, nil
}

// canRespond reports whether the bridge's sink can answer held requests
// (Socket Mode or forward), which it declares in the meta of its pulls.
func (b *Bridge) canRespond() bool {
	return b.cfg.ForwardURL != "" || b.cfg.SocketMode || b.sm.connected()
}

// pullMeta is the unsigned meta of a pull (§8.2 capabilities).
func (b *Bridge) pullMeta() json.RawMessage {
	if !b.canRespond() {
		return nil
	}
	return json.RawMessage(`{"capabilities":["` + protocol.CapabilityRespond + `"]}`)
}

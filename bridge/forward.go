package bridge

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

func validateForwardURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("config: forward URL %q: want an absolute http(s) URL such as http://127.0.0.1:3000/slack/events", s)
	}
	return nil
}

// forwardBody builds the body Slack would have sent for ev: the JSON body
// for Events API callbacks, a "payload=<json>" form body for interactivity,
// the form fields for slash commands. kind is kindNone for events that are
// not Slack requests.
func forwardBody(ev *Event) (body []byte, contentType string, kind forwardKind, err error) {
	switch {
	case ev.Source != protocol.SourceSlack:
		return nil, "", kindNone, nil
	case ev.Type == protocol.TypeEventCallback || ev.Type == protocol.TypeAppRateLimited:
		return []byte(ev.Payload), "application/json", kindEvents, nil
	case ev.Type == protocol.TypeSlashCommand:
		var fields map[string]any
		if err := json.Unmarshal(ev.Payload, &fields); err != nil {
			return nil, "", kindNone, fmt.Errorf("slash command payload is not a JSON object: %w", err)
		}
		v := url.Values{}
		for k, x := range fields {
			switch x := x.(type) {
			case string:
				v.Set(k, x)
			case nil:
				v.Set(k, "")
			default:
				b, _ := json.Marshal(x)
				v.Set(k, string(b))
			}
		}
		return []byte(v.Encode()), "application/x-www-form-urlencoded", kindCommands, nil
	default:
		var compact bytes.Buffer
		if err := json.Compact(&compact, ev.Payload); err != nil {
			return nil, "", kindNone, fmt.Errorf("interaction payload is not JSON: %w", err)
		}
		return []byte("payload=" + url.QueryEscape(compact.String())), "application/x-www-form-urlencoded", kindInteractivity, nil
	}
}

type forwardKind int

const (
	kindNone forwardKind = iota
	kindEvents
	kindInteractivity
	kindCommands
)

// SlackSignature returns the X-Slack-Signature value for body sent at ts:
// "v0=" + hex(HMAC-SHA256(secret, "v0:<ts>:<body>")).
func SlackSignature(secret []byte, ts int64, body []byte) string {
	msg := make([]byte, 0, len(body)+24)
	msg = append(msg, "v0:"...)
	msg = strconv.AppendInt(msg, ts, 10)
	msg = append(msg, ':')
	msg = append(msg, body...)
	return "v0=" + hex.EncodeToString(crypto.HMACSHA256(secret, msg))
}

// errForwardRejected marks a non-2xx answer from the local app.
var errForwardRejected = errors.New("local app rejected the forwarded request")

// forward posts ev to the local app and returns the app's answer for a
// held message (the response body). Events that are not Slack requests
// (other sources) are not forwarded and count as delivered.
//
// Like Slack, a re-forward of a message whose earlier forward failed
// carries X-Slack-Retry-Num and X-Slack-Retry-Reason (http_timeout,
// http_error, connection_failed, too_many_redirects), and a non-2xx answer
// with X-Slack-No-Retry: 1 ends the retries: the event counts as delivered.
func (b *Bridge) forward(ctx context.Context, p *prepared) ([]byte, error) {
	ev := p.ev
	body, ct, kind, err := forwardBody(ev)
	if err != nil {
		// Retrying cannot help: skip forwarding this one (other sinks
		// still get it) rather than block the inbox.
		b.metrics.poison.WithLabelValues("unforwardable").Inc()
		b.log.Warn("payload cannot be turned into a Slack request; not forwarded", "message_id", ev.MessageID, "type", ev.Type, "err", err)
		return nil, nil
	}
	var target string
	switch kind {
	case kindNone:
		return nil, nil
	case kindEvents:
		target = b.cfg.ForwardURL
	case kindInteractivity:
		target = b.cfg.ForwardInteractivityURL
	case kindCommands:
		target = b.cfg.ForwardCommandsURL
	}
	st := b.retryOf(ev.MessageID)
	b.dmu.Lock()
	num, reason := st.num, st.reason
	b.dmu.Unlock()
	fail := func(why string, err error) ([]byte, error) {
		b.dmu.Lock()
		st.num++
		st.reason = why
		b.dmu.Unlock()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ForwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	ts := b.cfg.Now().Unix()
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", SlackSignature(b.cfg.ForwardSigningSecret, ts, body))
	req.Header.Set("User-Agent", "sealrelay-bridge (Slackbot 1.0 compatible)")
	if num > 0 {
		req.Header.Set("X-Slack-Retry-Num", strconv.Itoa(num))
		req.Header.Set("X-Slack-Retry-Reason", reason)
	}
	resp, err := b.forwardClient.Do(req)
	if err != nil {
		why := "connection_failed"
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			why = "http_timeout"
		}
		return fail(why, fmt.Errorf("forward to local app: %v", unwrapURLError(err)))
	}
	defer resp.Body.Close()
	defer func() { _, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) }()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
	case resp.Header.Get("X-Slack-No-Retry") == "1":
		b.metrics.forwardNoRetry.Inc()
		b.log.Info("the local app refused the event and asked for no retry (X-Slack-No-Retry: 1); acked", "message_id", ev.MessageID, "type", ev.Type, "status", resp.StatusCode)
		return nil, nil
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fail("too_many_redirects", fmt.Errorf("%w: HTTP %d (a redirect is not a delivery)", errForwardRejected, resp.StatusCode))
	default:
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			b.authHintOnce.Do(func() {
				b.log.Error("the local app refuses the forwarded requests as unauthorized; the forward signing secret probably differs from the app's signing secret (--forward-signing-secret-file must hold the secret the app verifies with)", "status", resp.StatusCode, "url", target)
			})
		}
		return fail("http_error", fmt.Errorf("%w: HTTP %d", errForwardRejected, resp.StatusCode))
	}
	if !p.held.ResponseExpected {
		return nil, nil
	}
	// Delivered (2xx); only the answer depends on reading the body.
	answerBody, err := io.ReadAll(io.LimitReader(resp.Body, MaxRespondSize+1))
	if err != nil {
		b.log.Warn("reading the local app's answer failed; Slack gets no answer", "message_id", ev.MessageID, "err", unwrapURLError(err))
		return nil, nil
	}
	if len(answerBody) > MaxRespondSize {
		b.log.Warn("the local app's answer is larger than 64 KiB; not sent to Slack", "message_id", ev.MessageID)
		return nil, nil
	}
	answer, err := answerFromHTTP(answerBody)
	if err != nil {
		b.log.Warn("the local app's answer cannot be sent to Slack", "message_id", ev.MessageID, "err", err)
		return nil, nil
	}
	return answer, nil
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

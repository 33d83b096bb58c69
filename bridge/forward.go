package bridge

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	case ev.Type == protocol.TypeEventCallback || ev.Type == "app_rate_limited":
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

// forward posts ev to the local app. Events that are not Slack requests
// (other sources) are not forwarded and count as delivered.
func (b *Bridge) forward(ctx context.Context, ev *Event) error {
	body, ct, kind, err := forwardBody(ev)
	if err != nil {
		// Retrying cannot help: skip forwarding this one (other sinks
		// still get it) rather than block the inbox.
		b.metrics.poison.WithLabelValues("unforwardable").Inc()
		b.log.Warn("payload cannot be turned into a Slack request; not forwarded", "message_id", ev.MessageID, "type", ev.Type, "err", err)
		return nil
	}
	var target string
	switch kind {
	case kindNone:
		return nil
	case kindEvents:
		target = b.cfg.ForwardURL
	case kindInteractivity:
		target = b.cfg.ForwardInteractivityURL
	case kindCommands:
		target = b.cfg.ForwardCommandsURL
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ForwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	ts := b.cfg.Now().Unix()
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("X-Slack-Signature", SlackSignature(b.cfg.ForwardSigningSecret, ts, body))
	req.Header.Set("User-Agent", "sealrelay-bridge (Slackbot 1.0 compatible)")
	resp, err := b.forwardClient.Do(req)
	if err != nil {
		return fmt.Errorf("forward to local app: %v", unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: HTTP %d", errForwardRejected, resp.StatusCode)
	}
	return nil
}

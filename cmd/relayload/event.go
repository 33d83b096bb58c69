package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
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
func channelID(n int) string { return fmt.Sprintf("CRL%05d", n) }

// eventID names event n of run runID.
func eventID(runID string, n int) string { return fmt.Sprintf("EvRL%s%08d", runID, n) }

// eventText is the message text: it carries the run, channel and sequence
// number so that a person reading a bridge's output can place it.
func eventText(runID string, channel, seq int) string {
	return fmt.Sprintf("<@%s> relayload run=%s ch=%d seq=%d", loadBotID, runID, channel, seq)
}

// eventBody builds the Slack Events API app_mention callback of event n
// (sequence number seq on channel ch) for team.
func eventBody(team, runID string, n, ch, seq int, now time.Time) []byte {
	ts := fmt.Sprintf("%d.%06d", now.Unix(), n%1_000_000)
	b, err := json.Marshal(map[string]any{
		"token": "relayload", "team_id": team, "api_app_id": loadAppID,
		"event": map[string]any{"type": "app_mention", "user": loadUserID, "text": eventText(runID, ch, seq),
			"ts": ts, "channel": channelID(ch), "event_ts": ts},
		"type": "event_callback", "event_id": eventID(runID, n), "event_time": now.Unix(),
		"authorizations": []map[string]any{{"team_id": team, "user_id": loadBotID, "is_bot": true}},
	})
	if err != nil {
		panic(err) // only strings and numbers: cannot fail
	}
	return b
}

// signedRequest builds the POST of body to the broker's /slack/events,
// signed with the Slack app's signing secret exactly as Slack signs it.
func signedRequest(ctx context.Context, brokerURL string, secret []byte, body []byte, now time.Time) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(brokerURL, "/")+"/slack/events", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build the webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	slackfake.SignRequest(req, string(secret), now, body)
	return req, nil
}

// postEvent posts one signed webhook and reports whether the broker
// answered 200; a non-200 answer's status and error text come back as err.
func postEvent(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("post the webhook: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the broker answered %s: %s", resp.Status, strings.TrimSpace(string(answer)))
	}
	return nil
}

// deliveredEventID reads the Slack event id of a delivered Events API
// callback (the forwarded body, or an SSE event's payload).
func deliveredEventID(payload []byte) (string, error) {
	var p struct {
		Type    string `json:"type"`
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", fmt.Errorf("delivered payload is not JSON: %w", err)
	}
	if p.Type != "event_callback" || p.EventID == "" {
		return "", errors.New("delivered payload is not an Events API callback with an event_id")
	}
	return p.EventID, nil
}

// sseEventID reads the Slack event id of one SSE event's data (the bridge's
// Event object).
func sseEventID(data []byte) (string, error) {
	var ev struct {
		MessageID string          `json:"message_id"`
		Type      string          `json:"type"`
		Payload   json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return "", fmt.Errorf("SSE data is not JSON: %w", err)
	}
	if ev.MessageID == "" || len(ev.Payload) == 0 {
		return "", errors.New("SSE data has no message_id or payload")
	}
	return deliveredEventID(ev.Payload)
}

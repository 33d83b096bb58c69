package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// simEvent is a message the simulated user writes.
type simEvent struct {
	kind    string // "app_mention" or "message.im"
	channel string
	text    string
}

// postedEvent is what the simulated Slack made of it.
type postedEvent struct {
	eventID, channel, ts string
}

// generatorTexts are what the simulated user says, in turn.
var generatorTexts = []simEvent{
	{kind: "message.im", channel: sandboxDM, text: "hey, are you around?"},
	{kind: "app_mention", channel: sandboxChannel, text: "<@" + sandboxBotUser + "> can you summarise today's thread?"},
	{kind: "message.im", channel: sandboxDM, text: "what's on my calendar tomorrow?"},
	{kind: "app_mention", channel: sandboxChannel, text: "<@" + sandboxBotUser + "> deploy status please"},
	{kind: "message.im", channel: sandboxDM, text: "thanks!"},
}

// generate queues a simulated message every interval.
func (s *sandbox) generate(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case s.posts <- generatorTexts[i%len(generatorTexts)]:
		default: // the poster is behind; skip this one
		}
	}
}

// readStdin turns each typed line into a DM to the bot.
func (s *sandbox) readStdin(ctx context.Context, r io.Reader) {
	if r == nil {
		return
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		select {
		case s.posts <- simEvent{kind: "message.im", channel: sandboxDM, text: line}:
		case <-ctx.Done():
			return
		}
	}
}

// poster sends the queued messages one at a time.
func (s *sandbox) poster(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-s.posts:
			if _, err := s.postEvent(ctx, ev); err != nil && ctx.Err() == nil {
				s.p.Printf("  ✗ %v\n", err)
			}
		}
	}
}

// postEvent has the simulated user write ev in the fake Slack (so that it
// has a real ts to reply or react to) and then delivers the matching Events
// API request, signed with the app's signing secret, to the broker.
func (s *sandbox) postEvent(ctx context.Context, ev simEvent) (postedEvent, error) {
	ts, err := s.userPost(ctx, ev.channel, ev.text)
	if err != nil {
		return postedEvent{}, fmt.Errorf("simulated Slack: %w", err)
	}
	return s.sendEvent(ctx, ev, ts)
}

// sendEvent delivers the Events API request for the user message ev (with
// Slack ts) to the broker, signed with the app's signing secret.
func (s *sandbox) sendEvent(ctx context.Context, ev simEvent, ts string) (postedEvent, error) {
	n := s.nextSeq()
	eventID := fmt.Sprintf("EvSBX%06d", n)
	inner := map[string]any{
		"user": sandboxUser, "text": ev.text, "ts": ts, "channel": ev.channel, "event_ts": ts,
	}
	if ev.kind == "app_mention" {
		inner["type"] = "app_mention"
	} else {
		inner["type"] = "message"
		inner["channel_type"] = "im"
	}
	body, err := json.Marshal(map[string]any{
		"token":      "sandbox-verification-token",
		"team_id":    s.orgID,
		"api_app_id": sandboxAppID,
		"event":      inner,
		"type":       "event_callback",
		"event_id":   eventID,
		"event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{
			"team_id": s.orgID, "user_id": sandboxBotUser, "is_bot": true, "is_enterprise_install": false,
		}},
	})
	if err != nil {
		return postedEvent{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.brokerURL+"/slack/events", bytes.NewReader(body))
	if err != nil {
		return postedEvent{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	slackfake.SignRequest(req, s.signingSecret, time.Now(), body)
	s.tr.sent(eventID, ev.kind, ev.channel, ev.text)
	resp, err := s.httpc.Do(req)
	if err != nil {
		s.tr.failed(eventID, err.Error())
		return postedEvent{}, fmt.Errorf("post %s to the broker: %w", eventID, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		s.tr.failed(eventID, fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(answer))))
		return postedEvent{}, fmt.Errorf("broker answered %s for %s", resp.Status, eventID)
	}
	return postedEvent{eventID: eventID, channel: ev.channel, ts: ts}, nil
}

// nextSeq numbers the generated events.
func (s *sandbox) nextSeq() int {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	s.seq++
	return s.seq
}

// userPost writes text as the simulated user and returns its ts.
func (s *sandbox) userPost(ctx context.Context, channel, text string) (string, error) {
	form := formValues("token", s.userToken, "channel", channel, "text", text)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, slackfake.APIURL(s.slackURL)+"chat.postMessage",
		strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		TS    string `json:"ts"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", fmt.Errorf("chat.postMessage: %w", err)
	}
	if !out.OK {
		return "", fmt.Errorf("chat.postMessage: %s", out.Error)
	}
	return out.TS, nil
}

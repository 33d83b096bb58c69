package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/queue"
)

// printer serializes writes to the terminal.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

// Printf writes one formatted chunk atomically.
func (p *printer) Printf(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, a...)
}

// stage is one step of an event's way from Slack to the agent.
type stage int

const (
	stSent      stage = iota // the simulated Slack sent the webhook
	stReceived               // the broker's handler got the request
	stQueued                 // sealed to the agent and durably queued
	stPulled                 // leased to the bridge by a pull
	stOpened                 // the bridge verified, opened and de-duplicated it
	stDelivered              // it arrived on GET /events
	numStages
)

var stageNames = [numStages]string{
	"sent", "received by broker", "sealed and queued", "pulled", "verified and opened", "delivered on /events",
}

// trace is the timeline of one generated event.
type trace struct {
	eventID, kind, channel, text string
	msgID                        string
	at                           [numStages]time.Time
	warned                       bool
}

// tracker correlates the broker's and the bridge's observations of an event
// (by Slack event_id until it is queued, then by message id) and prints each
// event's way once it is delivered.
type tracker struct {
	p       *printer
	mu      sync.Mutex
	byEvent map[string]*trace
	byMsg   map[string]*trace
	// early holds stages seen for a message id before the enqueue that
	// created it returned (a pull can win that race).
	early map[string]map[stage]time.Time
}

func newTracker(p *printer) *tracker {
	return &tracker{p: p, byEvent: map[string]*trace{}, byMsg: map[string]*trace{},
		early: map[string]map[stage]time.Time{}}
}

// sent records a generated event.
func (t *tracker) sent(eventID, kind, channel, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := &trace{eventID: eventID, kind: kind, channel: channel, text: text}
	tr.at[stSent] = time.Now()
	t.byEvent[eventID] = tr
}

// failed reports an event the broker refused.
func (t *tracker) failed(eventID, why string) {
	t.mu.Lock()
	tr := t.byEvent[eventID]
	delete(t.byEvent, eventID)
	t.mu.Unlock()
	if tr != nil {
		t.p.Printf("  ✗ %s %s was not accepted by the broker: %s\n", eventID, tr.kind, why)
	}
}

func (t *tracker) received(eventID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.byEvent[eventID]; tr != nil && tr.at[stReceived].IsZero() {
		tr.at[stReceived] = time.Now()
	}
}

func (t *tracker) queued(eventID, msgID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr := t.byEvent[eventID]; tr != nil && tr.msgID == "" {
		tr.at[stQueued] = time.Now()
		tr.msgID = msgID
		t.byMsg[msgID] = tr
		delete(t.byEvent, eventID)
		for s, at := range t.early[msgID] {
			tr.at[s] = at
			if at.Before(tr.at[stQueued]) {
				tr.at[stQueued] = at // it was queued before it could be pulled
			}
		}
		delete(t.early, msgID)
	}
}

// mark records stage s of the message msgID, the first time only.
func (t *tracker) mark(msgID string, s stage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr := t.byMsg[msgID]
	if tr == nil {
		if len(t.early) > 10000 {
			clear(t.early)
		}
		if t.early[msgID] == nil {
			t.early[msgID] = map[stage]time.Time{}
		}
		if _, ok := t.early[msgID][s]; !ok {
			t.early[msgID][s] = time.Now()
		}
		return
	}
	if tr.at[s].IsZero() {
		tr.at[s] = time.Now()
	}
}

// delivered prints the way of ev, which just arrived on /events.
func (t *tracker) delivered(ev *bridge.Event) {
	now := time.Now()
	t.mu.Lock()
	tr := t.byMsg[ev.MessageID]
	delete(t.byMsg, ev.MessageID)
	t.mu.Unlock()
	if tr == nil {
		t.p.Printf("  ▸ event %s/%s delivered on /events (message %s)\n", ev.Source, ev.Type, ev.MessageID)
		return
	}
	tr.at[stDelivered] = now
	// The bridge publishes to the stream just before it calls the in-process
	// hook that marks "opened"; by the time the stream has it, it was opened.
	if tr.at[stOpened].IsZero() || tr.at[stOpened].After(now) {
		tr.at[stOpened] = now
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "  ▸ %s %s in %s from %s: %s\n    ", tr.eventID, tr.kind, tr.channel, sandboxUser, quote(tr.text, 70))
	for s := stReceived; s < numStages; s++ {
		if s > stReceived {
			sb.WriteString(" → ")
		}
		if tr.at[s].IsZero() {
			fmt.Fprintf(&sb, "%s ?", stageNames[s])
			continue
		}
		fmt.Fprintf(&sb, "%s +%s", stageNames[s], ms(tr.at[s].Sub(tr.at[stSent])))
	}
	fmt.Fprintf(&sb, "\n    message_id %s", ev.MessageID)
	if ev.ThreadID != "" {
		fmt.Fprintf(&sb, ", thread_id %s", ev.ThreadID)
	}
	sb.WriteString("\n")
	t.p.Printf("%s", sb.String())
}

// watch warns about events that did not arrive within after.
func (t *tracker) watch(ctx context.Context, after time.Duration) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var warn []string
		t.mu.Lock()
		for _, m := range []map[string]*trace{t.byEvent, t.byMsg} {
			for _, tr := range m {
				if tr.warned || time.Since(tr.at[stSent]) < after {
					continue
				}
				tr.warned = true
				last := stSent
				for s := stSent; s < numStages; s++ {
					if !tr.at[s].IsZero() {
						last = s
					}
				}
				warn = append(warn, fmt.Sprintf("  ⚠ %s not delivered after %s; last step: %s\n", tr.eventID, after, stageNames[last]))
			}
		}
		t.mu.Unlock()
		for _, w := range warn {
			t.p.Printf("%s", w)
		}
	}
}

// eventIDKey carries the Slack event_id of a webhook request down to the
// queue, where the broker enqueues the sealed copy.
type eventIDKey struct{}

// brokerMiddleware notes when the broker receives each Slack event.
func (t *tracker) brokerMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/slack/events" {
			next.ServeHTTP(w, r)
			return
		}
		head, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		var env struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(head, &env) == nil && env.EventID != "" {
			t.received(env.EventID)
			r = r.WithContext(context.WithValue(r.Context(), eventIDKey{}, env.EventID))
		}
		next.ServeHTTP(w, r)
	})
}

// observedStore is the broker's queue with the tracker looking on.
type observedStore struct {
	queue.Store
	tr *tracker
}

// Enqueue implements queue.Store.
func (o *observedStore) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	id, err := o.Store.Enqueue(ctx, inbox, body)
	if err == nil {
		if ev, ok := ctx.Value(eventIDKey{}).(string); ok {
			o.tr.queued(ev, id)
		}
	}
	return id, err
}

// EnqueueID implements queue.Store (the broker stores Events API copies
// under ids derived from the event id).
func (o *observedStore) EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error) {
	stored, err := o.Store.EnqueueID(ctx, inbox, id, body)
	if err == nil { // also a repeat: the first attempt's reply may have been lost
		if ev, ok := ctx.Value(eventIDKey{}).(string); ok {
			o.tr.queued(ev, id)
		}
	}
	return stored, err
}

// Pull implements queue.Store.
func (o *observedStore) Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]queue.Message, error) {
	msgs, err := o.Store.Pull(ctx, inbox, max, wait)
	for _, m := range msgs {
		o.tr.mark(m.ID, stPulled)
	}
	return msgs, err
}

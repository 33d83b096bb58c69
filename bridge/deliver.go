package bridge

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// maxMessageIDLen bounds the message ids the bridge handles.
const maxMessageIDLen = 512

// prepared is one verified, opened message on its way to the sinks.
type prepared struct {
	idx     int // position in the pulled batch
	ev      *Event
	eventID string
	held    heldFields
}

// retryState is what the bridge remembers of a message whose delivery
// failed: how often, and why the last forward failed.
type retryState struct {
	num    int    // earlier failed forward attempts
	reason string // X-Slack-Retry-Reason of the next attempt
	socket int    // retry_attempt of the next Socket Mode envelope
}

// laneOutcome is what a delivery lane did.
type laneOutcome struct {
	acked []int // batch positions delivered (or not to be delivered)
	rest  []int // batch positions left for a retry, from the failure on
	err   error
}

// process verifies, opens and de-duplicates msgs in order, then delivers
// them in lanes: one lane per Slack channel, in order within the lane, at
// most Config.DeliveryConcurrency lanes at once, so that a slow event
// holds up only its own channel. It returns the ids to ack (delivered,
// duplicate or poison) in batch order and, when some lanes stopped at a
// message that could not be delivered, those lanes' messages from that one
// on (in batch order) and the error.
func (b *Bridge) process(ctx context.Context, msgs []protocol.InboxMessage) ([]string, []protocol.InboxMessage, error) {
	ackAt := make([]bool, len(msgs))
	restAt := make([]bool, len(msgs))
	var lanes [][]*prepared
	laneOf := map[string]int{}
	var derr error
	opened := b.openBatch(msgs)
	defer func() {
		for i := range opened {
			crypto.Wipe(opened[i].pt) // those prepare did not get to
		}
	}()
	for i := range msgs {
		if ctx.Err() != nil {
			break // shutting down: the rest comes back after its lease
		}
		p, ackNow, err := b.prepare(ctx, &msgs[i], &opened[i])
		if err != nil {
			// The broker's keys changed: deliver nothing of this batch.
			derr = err
			for j := i; j < len(msgs); j++ {
				restAt[j] = true
			}
			lanes = nil
			break
		}
		if p == nil {
			ackAt[i] = ackNow
			continue
		}
		p.idx = i
		key := laneKey(p.ev)
		n, ok := laneOf[key]
		if !ok {
			n = len(lanes)
			laneOf[key] = n
			lanes = append(lanes, nil)
		}
		lanes[n] = append(lanes[n], p)
	}
	outs := b.runLanes(ctx, lanes)
	var waitErr error
	for _, o := range outs {
		for _, i := range o.acked {
			ackAt[i] = true
		}
		for _, i := range o.rest {
			restAt[i] = true
		}
		switch {
		case o.err == nil:
		case errors.Is(o.err, errStreamFull) || errors.Is(o.err, errNoSocketClient):
			waitErr = o.err
		case derr == nil:
			derr = o.err
		}
	}
	if derr == nil {
		derr = waitErr
	}
	ackIDs := make([]string, 0, len(msgs))
	var rest []protocol.InboxMessage
	for i := range msgs {
		if ackAt[i] {
			ackIDs = append(ackIDs, msgs[i].MessageID)
		}
		if restAt[i] {
			rest = append(rest, msgs[i])
		}
	}
	if !b.cfg.DedupNoSync {
		if err := b.dedup.Sync(); err != nil {
			b.log.Error("dedup store sync failed", "err", err)
		}
	}
	// What the stream took must be on disk before it is acked.
	if err := b.hub.sync(); err != nil {
		b.log.Error("stream spool sync failed; not acking", "err", err)
		return nil, msgs, fmt.Errorf("%w: %v", errDelivery, err)
	}
	return ackIDs, rest, derr
}

// laneKey is the delivery lane of ev: its Slack channel ("" for events
// that name none, which share one lane).
func laneKey(ev *Event) string {
	ch, _, _ := strings.Cut(ev.ThreadID, ":")
	return ch
}

// runLanes delivers each lane in order, several lanes at once.
func (b *Bridge) runLanes(ctx context.Context, lanes [][]*prepared) []laneOutcome {
	outs := make([]laneOutcome, len(lanes))
	if len(lanes) == 1 {
		outs[0] = b.runLane(ctx, lanes[0])
		return outs
	}
	sem := make(chan struct{}, b.cfg.DeliveryConcurrency)
	var wg sync.WaitGroup
	for n, lane := range lanes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outs[n] = b.runLane(ctx, lane)
		}()
	}
	wg.Wait()
	return outs
}

func (b *Bridge) runLane(ctx context.Context, lane []*prepared) laneOutcome {
	var o laneOutcome
	for k, p := range lane {
		if ctx.Err() != nil {
			return o // shutting down: the rest comes back after its lease
		}
		ack, err := b.deliverPrepared(ctx, p)
		if err != nil {
			o.err = err
			for _, q := range lane[k:] {
				o.rest = append(o.rest, q.idx)
			}
			return o
		}
		if ack {
			o.acked = append(o.acked, p.idx)
		}
	}
	return o
}

// openedMessage is the stateless part of preparing one message: the
// broker signature verified, the sealed box opened and the envelope parsed
// (or why not).
type openedMessage struct {
	env *protocol.Envelope
	pt  []byte
	err error
}

// maxOpenWorkers bounds the goroutines that open one batch.
const maxOpenWorkers = 8

// openBatch verifies and opens the messages of a batch, on up to
// GOMAXPROCS cores at once (this is most of the bridge's CPU per event);
// prepare then takes the results in batch order, so everything with state
// (dedup, lanes, poison handling) stays sequential. Messages that fail the
// cheap id and org checks are not opened.
func (b *Bridge) openBatch(msgs []protocol.InboxMessage) []openedMessage {
	out := make([]openedMessage, len(msgs))
	open := func(i int) {
		m := &msgs[i]
		if !b.validIDs(m) {
			return
		}
		out[i].env, out[i].pt, out[i].err = b.openEnvelope(*m)
	}
	workers := min(runtime.GOMAXPROCS(0), len(msgs), maxOpenWorkers)
	if workers <= 1 {
		for i := range msgs {
			open(i)
		}
		return out
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
				open(i)
			}
		})
	}
	wg.Wait()
	return out
}

// validIDs reports whether m passes the checks prepare makes before
// opening it.
func (b *Bridge) validIDs(m *protocol.InboxMessage) bool {
	return m.MessageID != "" && len(m.MessageID) <= maxMessageIDLen &&
		m.OrgID == b.cfg.OrgID && (m.WorkspaceID == "" || m.WorkspaceID == m.OrgID)
}

// prepare handles the sequential part of one message, given what
// openBatch made of it: poison handling, held fields, dedup. It returns the
// message to deliver, or nil and whether to ack it (duplicate, poison) — or
// an error that stops the batch (broker keys changed). It takes (and
// wipes) o.pt.
func (b *Bridge) prepare(ctx context.Context, m *protocol.InboxMessage, o *openedMessage) (*prepared, bool, error) {
	b.metrics.received.Inc()
	if m.MessageID == "" || len(m.MessageID) > maxMessageIDLen {
		b.poison("bad_message_id", m, nil)
		return nil, false, nil
	}
	if m.OrgID != b.cfg.OrgID || (m.WorkspaceID != "" && m.WorkspaceID != m.OrgID) {
		b.poison("wrong_org", m, nil)
		return nil, true, nil
	}
	env, pt, err := o.env, o.pt, o.err
	o.pt = nil
	if err != nil {
		reason := "malformed"
		switch {
		case errors.Is(err, protocol.ErrEnvelopeSignature):
			// Before dropping it: did the broker change its keys? Then
			// stop without acking rather than drop everything from now on.
			if b.cfg.Now().Sub(b.lastKeyCheck) > time.Minute {
				b.lastKeyCheck = b.cfg.Now()
				if kerr := b.checkBrokerKeys(ctx); kerr != nil {
					return nil, false, kerr
				}
			}
			reason = "bad_signature"
		case errors.Is(err, protocol.ErrEnvelopeOpen):
			reason = "does_not_open"
		}
		b.poison(reason, m, err)
		return nil, true, nil
	}
	held := heldFields{ResponseExpected: env.ResponseExpected, RespondBy: env.RespondBy} // §8.2; absent on a Baudbot broker
	crypto.Wipe(pt)                                                                      // env holds its own copy of the payload
	if b.dedup.Seen(m.MessageID) {
		b.countDuplicate()
		b.log.Debug("duplicate suppressed", "message_id", m.MessageID)
		return nil, true, nil
	}
	ev := &Event{
		MessageID:       m.MessageID,
		Source:          env.Source,
		Type:            env.Type,
		BrokerTimestamp: env.BrokerTimestamp,
		Payload:         env.Payload,
	}
	var eventID string
	switch env.Source {
	case protocol.SourceSlack:
		info := inspectPayload(env.Type, env.Payload)
		ev.ThreadID, eventID = info.threadID, info.eventID
		if b.cfg.SocketModeAppID == "" {
			b.sm.learnAppID(info.appID)
		}
	case protocol.SourceSystem:
		switch env.Type {
		case protocol.TypeAppUninstalled, protocol.TypeTokensRevoked:
			b.log.Warn("broker notice: the Slack app was uninstalled or its bot token revoked; no events will arrive and sends will fail until the app is installed again", "type", env.Type)
		case protocol.TypeEventsDropped:
			b.dropNotice(m.MessageID, env.Payload)
		default:
			b.log.Info("broker notice", "type", env.Type)
		}
	}
	return &prepared{ev: ev, eventID: eventID, held: held}, false, nil
}

func (b *Bridge) countDuplicate() {
	b.metrics.duplicates.Inc()
	b.mu.Lock()
	b.health.Duplicates++
	b.mu.Unlock()
}

// deliverPrepared delivers one prepared message and reports whether to ack
// it, or returns a delivery error (then it is retried).
func (b *Bridge) deliverPrepared(ctx context.Context, p *prepared) (bool, error) {
	ev := p.ev
	if p.eventID != "" && b.dedup.SeenEvent(p.eventID) {
		// The same Slack event queued twice under two message ids.
		b.countDuplicate()
		b.log.Debug("duplicate Slack event suppressed", "message_id", ev.MessageID, "event_id", p.eventID)
		if err := b.dedup.Mark(ev.MessageID); err != nil {
			b.log.Error("dedup store write failed", "err", err)
		}
		return true, nil
	}
	dctx := context.WithoutCancel(ctx) // finish this delivery even when stopping
	answer, err := b.deliver(dctx, p, ctx.Done())
	if err != nil {
		switch {
		case errors.Is(err, errStreamFull):
			b.dmu.Lock()
			first := !b.streamWaiting
			b.streamWaiting = true
			b.dmu.Unlock()
			if first {
				b.log.Info("stream buffer holds only unread events; not taking more from the broker until an SSE consumer reads", "buffered", b.hub.stats().buffered)
			}
			return false, err
		case errors.Is(err, errNoSocketClient):
			b.log.Info("no Socket Mode client connected; the event stays at the broker until one connects", "message_id", ev.MessageID)
			return false, err
		}
		b.metrics.deliveryErrors.Inc()
		b.log.Warn("local delivery failed; will retry", "message_id", ev.MessageID, "type", ev.Type, "err", err)
		return false, fmt.Errorf("%w: %v", errDelivery, err)
	}
	b.dmu.Lock()
	b.streamWaiting = false
	delete(b.retries, ev.MessageID)
	b.dmu.Unlock()
	// The answer goes out as soon as the app gave it, before the ack.
	b.answer(ctx, p, answer)
	if err := b.dedup.MarkEvent(ev.MessageID, p.eventID); err != nil {
		b.log.Error("dedup store write failed", "err", err)
	}
	b.metrics.delivered.Inc()
	b.mu.Lock()
	b.health.Delivered++
	b.mu.Unlock()
	b.log.Debug("delivered", "message_id", ev.MessageID, "source", ev.Source, "type", ev.Type)
	return true, nil
}

// deliver hands ev to its sinks and returns the app's answer, if any.
// Sink choice, in this order: a connected Socket Mode client takes every
// event (and nothing else does, but Config.Deliver); otherwise, with
// Config.SocketMode, the event waits for a client (errNoSocketClient);
// otherwise every configured sink takes it (SSE stream, Config.Deliver,
// forward), skipping sinks that took it on an earlier, partly failed
// attempt.
func (b *Bridge) deliver(ctx context.Context, p *prepared, stop <-chan struct{}) ([]byte, error) {
	ev := p.ev
	b.dmu.Lock()
	done := b.partial[ev.MessageID]
	b.dmu.Unlock()
	if b.cfg.Deliver != nil && done&sinkCustom == 0 {
		if err := b.cfg.Deliver(ctx, ev); err != nil {
			b.remember(ev.MessageID, done)
			return nil, err
		}
		done |= sinkCustom
	}
	var answer []byte
	switch {
	case b.sm.connected() || b.cfg.SocketMode:
		st := b.retryOf(ev.MessageID)
		b.dmu.Lock()
		attempt := st.socket
		b.dmu.Unlock()
		payload, err := b.sm.deliver(ev, p.held.ResponseExpected, &attempt, stop)
		b.dmu.Lock()
		st.socket = attempt
		b.dmu.Unlock()
		if err != nil {
			b.remember(ev.MessageID, done)
			return nil, err
		}
		if p.held.ResponseExpected {
			if answer, err = answerFromSocket(payload); err != nil {
				b.log.Warn("the Socket Mode ack's payload cannot be sent as the answer", "message_id", ev.MessageID, "err", err)
			}
		}
	default:
		if b.cfg.Stream && done&sinkStream == 0 {
			if _, err := b.hub.publish(ev); err != nil {
				b.remember(ev.MessageID, done)
				return nil, err
			}
			done |= sinkStream
		}
		if b.cfg.ForwardURL != "" && done&sinkForward == 0 {
			var err error
			if answer, err = b.forward(ctx, p); err != nil {
				b.remember(ev.MessageID, done)
				return nil, err
			}
		}
	}
	b.dmu.Lock()
	delete(b.partial, ev.MessageID)
	b.dmu.Unlock()
	return answer, nil
}

func (b *Bridge) remember(id string, done uint8) {
	if done == 0 {
		return
	}
	b.dmu.Lock()
	defer b.dmu.Unlock()
	if len(b.partial) > 10000 {
		clear(b.partial)
	}
	b.partial[id] = done
}

// retryOf returns the retry state of message id, creating it.
func (b *Bridge) retryOf(id string) *retryState {
	b.dmu.Lock()
	defer b.dmu.Unlock()
	st := b.retries[id]
	if st == nil {
		if len(b.retries) > 10000 {
			clear(b.retries)
		}
		st = &retryState{}
		b.retries[id] = st
	}
	return st
}

package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
)

// errSealFailed marks a per-agent sealing failure in fanOut.
var errSealFailed = errors.New("seal failed")

// fanOut seals the envelope separately to every active agent of org (an
// agent whose access token expired is not active) and enqueues each copy.
// agents nil means "list them". It returns an error (→ 503) only when a
// copy could not be stored for a reason other than a full inbox, too large
// a body or a sealing failure; those drops are recorded for the agent's
// events_dropped notice (see drops.go).
//
// With a Slack event id, every copy is stored under messageID(org, event id,
// agent) with queue.Store.EnqueueID: Slack's retry of an event whose first
// attempt got a 503 after (some of) its copies were stored, e.g. because
// Redis executed the transaction but the reply was lost, stores no second
// copy, and a copy that does get through twice carries the same message id,
// which bridges de-duplicate. Interactivity payloads and slash commands have
// no event id and Slack does not retry them, so their copies get random ids.
//
// What is per event is done once: the envelope is built once, and when the
// store is a queue.BatchEnqueuer all copies go to it in one call (one Redis
// round trip, one bbolt transaction), and the copies share one ephemeral
// X25519 key (crypto.MultiSealer). What is per agent — the shared key, the
// box and the Ed25519 signature — runs on up to GOMAXPROCS goroutines.
func (s *Server) fanOut(ctx context.Context, org, eventID, source, typ string, payload []byte, agents []*state.Agent) *apiError {
	return s.fanOutHold(ctx, org, eventID, source, typ, payload, agents, nil)
}

// fanCopy is one agent's copy of an event in fanOutHold.
type fanCopy struct {
	agent *state.Agent
	id    string // message id; "" for a random one
	body  []byte // stored form (protocol.Stored)
	err   error
}

// fanOutHold is fanOut for a held Slack request when h is not nil: every
// copy's envelope carries response_expected and respond_by, and every copy
// is stored under the hold id (see held.go).
func (s *Server) fanOutHold(ctx context.Context, org, eventID, source, typ string, payload []byte, agents []*state.Agent, h *heldCopy) *apiError {
	if agents == nil {
		var err error
		if agents, err = s.st.ListAgents(ctx, org); err != nil {
			s.logger(ctx).Error("list agents failed", "err", err)
			return errf(http.StatusServiceUnavailable, "state store unavailable")
		}
	}
	now := s.now()
	active := agents[:0]
	for _, a := range agents {
		if now.Before(a.AccessTokenExpiresAt) {
			active = append(active, a)
		}
	}
	if len(active) == 0 {
		s.m.eventsDropped.WithLabelValues("no_agents").Inc()
		s.logger(ctx).Info("event dropped: no active agent", "source", source, "type", typ)
		return nil
	}
	if active = s.pauseIdle(ctx, active, eventID, now); len(active) == 0 {
		return nil // every copy paused, counted and recorded (idle.go)
	}
	ts := now.Unix()
	env := protocol.Envelope{Source: source, Type: typ, BrokerTimestamp: ts, Payload: payload}
	if h != nil {
		env.ResponseExpected, env.RespondBy = true, h.respondBy
	}
	plain := env.Plaintext()
	defer crypto.Wipe(plain)

	copies := make([]fanCopy, len(active))
	var sealer *crypto.MultiSealer
	if len(active) > 1 {
		var err error
		if sealer, err = crypto.NewMultiSealer(); err != nil {
			s.logger(ctx).Error("sealing failed", "err", err)
			return errf(http.StatusServiceUnavailable, "sealing failed")
		}
	}
	seal := func(i int) {
		c := &copies[i]
		c.agent = active[i]
		switch {
		case h != nil:
			c.id = h.id
		case eventID != "":
			c.id = s.messageID(org, eventID, c.agent.ID)
		}
		body, err := protocol.SealEnvelopeStored(sealer, plain, org, ts, c.agent.BoxPublicKey, s.keys.Signing, s.cfg.CompactStored)
		if err != nil {
			c.err = fmt.Errorf("%w: %w", errSealFailed, err)
			return
		}
		c.body = body // the form s.stored gives
	}
	parallel(len(copies), seal)
	s.storeCopies(ctx, copies)
	return s.countCopies(ctx, copies, org, eventID, typ, now, h)
}

// parallel runs f(0) … f(n-1) on up to GOMAXPROCS goroutines (the caller's
// among them) and returns when all are done.
func parallel(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// storeCopies enqueues the sealed copies: in one call when the store takes
// batches, else one call per copy, concurrently.
func (s *Server) storeCopies(ctx context.Context, copies []fanCopy) {
	var todo []int
	for i := range copies {
		if copies[i].err == nil {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return
	}
	if b, ok := s.q.(queue.BatchEnqueuer); ok && len(todo) > 1 {
		items := make([]queue.Item, len(todo))
		for j, i := range todo {
			items[j] = queue.Item{Inbox: copies[i].agent.ID, ID: copies[i].id, Body: copies[i].body}
		}
		for j, r := range b.EnqueueIDs(ctx, items) {
			copies[todo[j]].err = r.Err
		}
		return
	}
	enqueue := func(c *fanCopy) {
		if c.id != "" {
			_, c.err = s.q.EnqueueID(ctx, c.agent.ID, c.id, c.body)
		} else {
			_, c.err = s.q.Enqueue(ctx, c.agent.ID, c.body)
		}
	}
	if len(todo) == 1 {
		enqueue(&copies[todo[0]])
		return
	}
	var wg sync.WaitGroup
	for _, i := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enqueue(&copies[i])
		}()
	}
	wg.Wait()
}

// countCopies does the per-copy bookkeeping (metrics, depth tracking,
// recorded drops) and returns the 503 when a copy failed for a reason a
// retry can fix.
func (s *Server) countCopies(ctx context.Context, copies []fanCopy, org, eventID, typ string, now time.Time, h *heldCopy) *apiError {
	var failed bool
	for i := range copies {
		a, err := copies[i].agent, copies[i].err
		switch {
		case err == nil:
			if h != nil {
				h.stored++
			}
			s.m.eventsQueued.Inc()
			s.depth.track(a.ID, org)
		case errors.Is(err, queue.ErrInboxFull):
			s.m.eventsDropped.WithLabelValues(string(protocol.DropInboxFull)).Inc()
			s.logger(ctx).Warn("event copy dropped: inbox full", "agent_id", a.ID, "type", typ)
			s.recordDrop(ctx, a.ID, protocol.DropInboxFull, eventID, now)
		case errors.Is(err, errSealFailed):
			// Only this agent's key can cause it (a low-order key stored
			// before registration checked for them); retrying cannot help,
			// and failing the request would block every agent of the org.
			s.m.eventsDropped.WithLabelValues(string(protocol.DropSealFailed)).Inc()
			s.logger(ctx).Error("event copy dropped: sealing to the agent's key failed", "agent_id", a.ID, "type", typ)
			s.recordDrop(ctx, a.ID, protocol.DropSealFailed, eventID, now)
		case errors.Is(err, queue.ErrTooLarge):
			s.m.eventsDropped.WithLabelValues(string(protocol.DropTooLarge)).Inc()
			s.logger(ctx).Warn("event copy dropped: too large", "agent_id", a.ID, "type", typ)
			s.recordDrop(ctx, a.ID, protocol.DropTooLarge, eventID, now)
		default:
			failed = true
			s.logger(ctx).Error("enqueue failed", "agent_id", a.ID, "err", err)
		}
	}
	if failed {
		return errf(http.StatusServiceUnavailable, "inbox store unavailable")
	}
	return nil
}

package broker

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// heldCopy is what fanOutHold adds to the copies of a held request.
type heldCopy struct {
	id        string // hold id, also the message id of every copy
	respondBy int64  // Unix ms
	stored    int    // copies fanOutHold stored
}

// heldTypes are the payload types whose HTTP response body Slack reads, so
// an agent's answer can become it. block_actions, shortcuts, message
// actions and dialog_cancellation are answered at once: Slack ignores their
// body.
var heldTypes = map[string]bool{
	protocol.TypeSlashCommand: true,
	"view_submission":         true,
	"view_closed":             true,
	"block_suggestion":        true,
	"interactive_message":     true,
	"dialog_submission":       true,
	"dialog_suggestion":       true,
}

// holdsResponse reports whether Slack reads the response body of typ.
func holdsResponse(typ string) bool { return heldTypes[typ] }

// respondCapable reports whether an active agent of the list declared
// inbox.respond recently enough (Agent.RespondUntil).
func (s *Server) respondCapable(agents []*state.Agent) bool {
	now := s.now()
	for _, a := range agents {
		if now.Before(a.AccessTokenExpiresAt) && now.Before(a.RespondUntil) {
			return true
		}
	}
	return false
}

// holdRequest queues a held request's copies and answers Slack with the
// first agent's respond, or with an empty 200 at the deadline
// (Config.SyncResponseTimeout after arrived). When the hold cannot be
// registered the request is queued and answered at once, as without the
// capability: the event is never lost for want of a hold.
func (s *Server) holdRequest(w http.ResponseWriter, r *http.Request, arrived time.Time, org, typ string, payload []byte, agents []*state.Agent) {
	ctx := r.Context()
	if !s.beginHold() {
		s.answerAtOnce(ctx, w, org, typ, payload, agents)
		return
	}
	defer s.holdWG.Done()
	timeout := s.cfg.SyncResponseTimeout
	deadline := arrived.Add(timeout)
	id, err := newHoldID()
	var answers <-chan []byte
	if err == nil {
		answers, err = s.holds.Hold(ctx, id, org, timeout+holdTombstone)
	}
	if err != nil {
		s.logger(ctx).Warn("holding the Slack request failed; answered at once", "type", typ, "err", err)
		s.answerAtOnce(ctx, w, org, typ, payload, agents)
		return
	}
	defer s.holds.Release(id)
	respondBy := s.now().Add(time.Until(deadline)).UnixMilli()
	hc := &heldCopy{id: id, respondBy: respondBy}
	if e := s.fanOutHold(ctx, org, "", protocol.SourceSlack, typ, payload, agents, hc); e != nil || hc.stored == 0 {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
		_, _ = s.holds.Expire(cctx, id)
		cancel()
		if e != nil {
			s.fail(w, e)
			return
		}
		// Every copy was dropped (full inboxes): no agent can answer.
		w.WriteHeader(http.StatusOK)
		return
	}
	s.rm.held.Inc()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	var sealed []byte
	select {
	case sealed = <-answers:
	case <-timer.C:
		// The webhook's store deadline (withDeadline) may have passed
		// already; this bookkeeping gets its own bound.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
		expired, err := s.holds.Expire(cctx, id)
		cancel()
		if err != nil {
			s.logger(ctx).Warn("marking a held request expired failed", "hold_id", id, "err", err)
			expired = true
		}
		if !expired {
			// A respond won just before the deadline; its answer is in flight.
			grace := time.NewTimer(holdLostGrace)
			select {
			case sealed = <-answers:
			case <-grace.C:
				s.logger(ctx).Warn("held request answer claimed but not received; answered empty", "hold_id", id, "type", typ)
			}
			grace.Stop()
		}
	}
	if sealed == nil {
		s.rm.holdSeconds.WithLabelValues("expired").Observe(time.Since(arrived).Seconds())
		s.rm.expired.Inc()
		s.logger(ctx).Info("held request answered empty at the deadline", "hold_id", id, "type", typ)
		w.WriteHeader(http.StatusOK)
		return
	}
	body, err := s.keys.Box.OpenAnonymous(sealed)
	if err != nil {
		s.rm.holdSeconds.WithLabelValues("expired").Observe(time.Since(arrived).Seconds())
		s.rm.expired.Inc()
		s.logger(ctx).Error("held request answer does not open; answered empty", "hold_id", id)
		w.WriteHeader(http.StatusOK)
		return
	}
	defer crypto.Wipe(body)
	s.rm.holdSeconds.WithLabelValues("answered").Observe(time.Since(arrived).Seconds())
	s.rm.answered.Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// beginHold joins a held request to holdWG unless the server is shutting
// down (then the request is answered at once). Under pollsMu, so no hold
// joins after Shutdown started waiting.
func (s *Server) beginHold() bool {
	s.pollsMu.Lock()
	defer s.pollsMu.Unlock()
	if s.closing {
		return false
	}
	s.holdWG.Add(1)
	return true
}

// answerAtOnce queues the copies without a hold and answers Slack with the
// empty 200 of section 5.
func (s *Server) answerAtOnce(ctx context.Context, w http.ResponseWriter, org, typ string, payload []byte, agents []*state.Agent) {
	if e := s.fanOut(ctx, org, "", protocol.SourceSlack, typ, payload, agents); e != nil {
		s.fail(w, e)
		return
	}
	w.WriteHeader(http.StatusOK)
}

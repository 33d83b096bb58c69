package broker

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Deadlines that keep a stalled store (a frozen Redis, a full disk) from
// holding Slack's webhooks or the readiness probe.
const (
	// DefaultWebhookTimeout is the default of Config.WebhookTimeout. With
	// storeCleanupTimeout on top, a webhook is answered within about 1.8 s
	// even when the store never answers; Slack waits 3 s.
	DefaultWebhookTimeout = 1500 * time.Millisecond
	// ReadyzTimeout bounds the store pings of GET /readyz, so the probe
	// answers within a second.
	ReadyzTimeout = 700 * time.Millisecond
	// storeCleanupTimeout bounds the bookkeeping a handler does after its
	// deadline or after a store error (releasing an event claim, recording
	// a drop).
	storeCleanupTimeout = 250 * time.Millisecond
)

// withDeadline runs a Slack webhook handler under Config.WebhookTimeout.
// When the deadline passed and the answer was a 5xx, the store was too slow:
// that is logged and counted in sealrelay_broker_store_timeouts_total.
func (s *Server) withDeadline(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WebhookTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return
		}
		if sw, ok := w.(*statusWriter); ok && sw.status < http.StatusInternalServerError {
			return
		}
		s.m.storeTimeouts.WithLabelValues(route).Inc()
		s.logger(ctx).Warn("store did not answer in time; webhook answered 503 so that Slack retries",
			"route", route, "timeout", s.cfg.WebhookTimeout)
	}
}

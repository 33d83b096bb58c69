package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/protocol"
)

// ErrAuditUnavailable answers (503) a call or send refused because
// Config.AuditRequired is set and its audit record could not be written.
const ErrAuditUnavailable = "audit_unavailable"

// Audit design. A bot-token use (api.call, send) is recorded twice: an
// intent record (phase "intent": agent, org, method, channel, bytes in)
// written before the token is decrypted and Slack is called, and a result
// record (phase "result", ref = the intent's seq: outcome, Slack error code,
// bytes out) written after. With AuditRequired a failed intent write
// refuses the request with 503 before Slack is called, so every token use
// Slack saw has a durable record; a result record that fails after the call
// cannot undo it, and is logged and counted (an intent without a result in
// the log means exactly that). One record after the call could not give that
// guarantee. Trust changes (install, register, revoke …) happen before they
// are recorded and are never refused: their record failing is logged and
// counted.

// auditMetrics count audit writes.
type auditMetrics struct {
	records *prometheus.CounterVec // kind, result
}

func newAuditMetrics(reg prometheus.Registerer) (*auditMetrics, error) {
	m := &auditMetrics{records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealrelay_broker_audit_records_total",
		Help: "Audit records written (result ok) or not (result error), by kind."}, []string{"kind", "result"})}
	if err := reg.Register(m.records); err != nil {
		return nil, err
	}
	return m, nil
}

// audit records ev, filling org and agent from the request when empty. It
// returns whether the record was written (always false with auditing off).
// A failure is logged (names only) and counted, never fatal here.
func (s *Server) audit(ctx context.Context, ev audit.Event) (uint64, bool) {
	if s.cfg.Audit == nil {
		return 0, false
	}
	ri := info(ctx)
	if ev.Org == "" {
		ev.Org = ri.org
	}
	if ev.Agent == "" {
		ev.Agent = ri.agent
	}
	seq, err := s.cfg.Audit.Record(context.WithoutCancel(ctx), ev)
	if err != nil {
		s.am.records.WithLabelValues(string(ev.Kind), "error").Inc()
		s.logger(ctx).Error("audit record failed", "kind", ev.Kind, "phase", ev.Phase, "err", err)
		return 0, false
	}
	s.am.records.WithLabelValues(string(ev.Kind), "ok").Inc()
	return seq, true
}

// auditIntent records a bot-token use before Slack is called. With
// AuditRequired a record that cannot be written refuses the use (503).
func (s *Server) auditIntent(ctx context.Context, kind audit.Kind, method string, channels []string, bytesIn int) (uint64, *apiError) {
	if s.cfg.Audit == nil {
		return 0, nil
	}
	seq, ok := s.audit(ctx, audit.Event{Kind: kind, Phase: audit.PhaseIntent, Method: method,
		Channel: strings.Join(channels, ","), BytesIn: int64(bytesIn)})
	if !ok && s.cfg.AuditRequired {
		return 0, errf(http.StatusServiceUnavailable, "%s: the audit log could not be written, so the call was not made; retry", ErrAuditUnavailable)
	}
	return seq, nil
}

// auditCallResult records the result of the api.call whose intent is ref.
// outcome is the call's metrics outcome; for "slack_error" Slack's error
// code is read from body (its "error" field only).
func (s *Server) auditCallResult(ctx context.Context, ref uint64, method string, channels []string, outcome string, e *apiError, body []byte) {
	if s.cfg.Audit == nil {
		return
	}
	code := ""
	switch {
	case e != nil:
		code, _, _ = strings.Cut(e.msg, ":")
	case outcome == "slack_error":
		var head struct {
			Error string `json:"error"`
		}
		code = "unparsed"
		if json.Unmarshal(body, &head) == nil && slackCodePattern.MatchString(head.Error) {
			code = head.Error
		}
	}
	s.audit(ctx, audit.Event{Kind: audit.KindCall, Phase: audit.PhaseResult, Ref: ref, Method: method,
		Channel: strings.Join(channels, ","), Outcome: outcome, ErrorCode: code, BytesOut: int64(len(body))})
}

// auditSendResult records the result of the send whose intent is ref.
func (s *Server) auditSendResult(ctx context.Context, ref uint64, action, channel string, err error) {
	if s.cfg.Audit == nil {
		return
	}
	ev := audit.Event{Kind: audit.KindSend, Phase: audit.PhaseResult, Ref: ref, Method: action, Channel: channel, Outcome: "ok"}
	if err != nil {
		ev.Outcome, ev.ErrorCode = "slack_error", slackErrorCode(err)
	}
	s.audit(ctx, ev)
}

// auditTokenRefresh records an oauth.v2.access refresh of org's bot token.
func (s *Server) auditTokenRefresh(ctx context.Context, org string, err error) {
	ev := audit.Event{Kind: audit.KindTokenRefresh, Org: org, Method: "oauth.v2.access", Outcome: "ok"}
	if err != nil {
		ev.Outcome, ev.ErrorCode = "error", slackErrorCode(err)
	}
	s.audit(ctx, ev)
}

// auditInstall records an OAuth install (reinstall: over an existing one).
func (s *Server) auditInstall(ctx context.Context, org string, reinstall bool) {
	kind := audit.KindInstall
	if reinstall {
		kind = audit.KindReinstall
	}
	s.audit(ctx, audit.Event{Kind: kind, Org: org, Method: "oauth.v2.access", Outcome: "ok"})
}

// auditRevoked records that org's tokens were deleted: reason is the Slack
// event (app_uninstalled, tokens_revoked) or error code (token_revoked,
// invalid_auth …) that caused it.
func (s *Server) auditRevoked(ctx context.Context, org, reason string) {
	kind := audit.KindTokenRevoked
	if reason == protocol.TypeAppUninstalled {
		kind = audit.KindUninstall
	}
	s.audit(ctx, audit.Event{Kind: kind, Org: org, Outcome: "ok", ErrorCode: reason})
}

package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// ErrResponseTooLarge answers an api.call whose Slack response exceeds
// Config.CallMaxResponse (502; the response is not truncated).
const ErrResponseTooLarge = "response_too_large"

// maxRetryAfter bounds a Retry-After passed through from Slack.
const maxRetryAfter = time.Hour

var slackCodePattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// handleCall serves POST /api/call (protocol §8.1): any Slack Web API
// method the agent's policy allows, relayed with the installation's bot
// token, the answer sealed to the agent under a fresh nonce.
func (s *Server) handleCall(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.CallRequest
	label, outcome := "other", "rejected"
	defer func() { s.cm.calls.WithLabelValues(label, outcome).Inc() }()
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.fail(w, e)
		return
	}
	if err := protocol.ValidateMethod(req.Method); err != nil {
		s.fail(w, errf(http.StatusBadRequest, "%s", err.Error()))
		return
	}
	label = methodLabel(req.Method)
	nonce, e := parseNonce(req.Nonce)
	if e != nil {
		s.fail(w, e)
		return
	}
	ct, e := parseCiphertext(req.EncryptedBody)
	if e != nil {
		s.fail(w, e)
		return
	}
	a, e := s.authAgent(ctx, r, org, req.ProtocolVersion, req.Timestamp,
		protocol.CallSigningBytes(org, req.Timestamp, req.Method, req.EncryptedBody, req.Nonce), req.Signature)
	if e != nil {
		s.fail(w, e)
		return
	}
	if o, e := s.useNonce(ctx, a.ID, req.Nonce); e != nil {
		outcome = o
		s.fail(w, e)
		return
	}
	if !s.cfg.CallPolicy.AllowsMethod(a.ID, org, req.Method) {
		outcome = protocol.ErrMethodNotAllowed
		s.refuse(ctx, w, req.Method, protocol.ErrMethodNotAllowed)
		return
	}
	resp, outc, e := s.call(ctx, a, org, req.Method, ct, &nonce)
	outcome = outc
	if e != nil {
		s.fail(w, e)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// refuse answers a policy refusal and logs it with agent, org and method
// (the request logger carries agent and org), never arguments.
func (s *Server) refuse(ctx context.Context, w http.ResponseWriter, method, code string) {
	s.logger(ctx).Warn("api call refused by policy", "slack_method", method, "reason", code)
	s.fail(w, errf(http.StatusForbidden, "%s", code))
}

// call opens the body, checks the channel policy and the rate limit, and
// relays the call to Slack. It returns the metrics outcome with the answer.
func (s *Server) call(ctx context.Context, a *state.Agent, org, method string, ct []byte, nonce *[crypto.NonceSize]byte) (*protocol.CallResponse, string, *apiError) {
	key := s.shared.Get(a.BoxPublicKey)
	pt, err := key.Open(ct, nonce)
	if err != nil {
		return nil, "rejected", errf(http.StatusBadRequest, "invalid encrypted_body: does not decrypt with this agent's key")
	}
	sreq, err := buildSlackRequest(pt)
	crypto.Wipe(pt)
	if err != nil {
		return nil, "rejected", errf(http.StatusBadRequest, "%s", err.Error())
	}
	rb := &wipeReader{b: sreq.body}
	defer rb.Close()
	if !s.cfg.CallPolicy.AllowsChannels(a.ID, org, sreq.channels, sreq.channelsParsed) {
		s.logger(ctx).Warn("api call refused by policy", "slack_method", method, "reason", protocol.ErrChannelNotAllowed)
		return nil, protocol.ErrChannelNotAllowed, errf(http.StatusForbidden, protocol.ErrChannelNotAllowed)
	}
	class := CallClass(method)
	if limit := s.cfg.callLimit(class); limit.Rate > 0 {
		ok, retry, err := s.st.Allow(ctx, "call:"+class+":"+a.ID, limit, s.now())
		if err != nil {
			s.logger(ctx).Error("rate limit check failed", "err", err)
			return nil, "error", errf(http.StatusServiceUnavailable, "state store unavailable")
		}
		if !ok {
			return nil, "rate_limited", &apiError{status: http.StatusTooManyRequests, msg: protocol.ErrRateLimited, retryAfter: retry}
		}
	}
	inst, err := s.st.GetInstallation(ctx, org)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, "rejected", errf(http.StatusNotFound, protocol.ErrOrgNotFound)
	case err != nil:
		s.logger(ctx).Error("installation lookup failed", "err", err)
		return nil, "error", errf(http.StatusServiceUnavailable, "state store unavailable")
	case inst.Revoked || inst.BotToken == "":
		return nil, "token_revoked", errf(http.StatusBadGateway, "token_revoked")
	}
	ref, e := s.auditIntent(ctx, audit.KindCall, method, sreq.channels, len(sreq.body))
	if e != nil {
		return nil, ErrAuditUnavailable, e
	}
	token, e := s.botToken(ctx, inst)
	if e != nil {
		return nil, "error", e
	}
	body, outcome, e := s.slackCall(ctx, org, method, token, sreq.contentType, rb)
	crypto.Wipe(token)
	s.auditCallResult(ctx, ref, method, sreq.channels, outcome, e, body)
	if e != nil {
		return nil, outcome, e
	}
	sealed, rnonce, err := key.Seal(body)
	crypto.Wipe(body)
	if err != nil {
		s.logger(ctx).Error("seal call response failed", "err", err)
		return nil, "error", errf(http.StatusInternalServerError, "internal error")
	}
	return &protocol.CallResponse{OK: true, ResponseNonce: base64.StdEncoding.EncodeToString(rnonce[:]),
		EncryptedResponse: base64.StdEncoding.EncodeToString(sealed)}, outcome, nil
}

// slackCall makes the Slack request and returns Slack's JSON body (caller
// wipes it) and the metrics outcome: "ok", or "slack_error" for a relayed
// {"ok":false}. Transport failures and 5xx are 502 slack_unavailable, a
// 429 is passed through with Slack's Retry-After.
func (s *Server) slackCall(ctx context.Context, org, method string, token []byte, contentType string, rb *wipeReader) ([]byte, string, *apiError) {
	label := methodLabel(method)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SlackTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(cctx, http.MethodPost, s.cfg.SlackAPIURL+method, rb)
	if err != nil {
		return nil, "error", errf(http.StatusInternalServerError, "internal error")
	}
	hreq.ContentLength = int64(len(rb.b))
	hreq.Header.Set("Content-Type", contentType)
	hreq.Header.Set("Authorization", "Bearer "+string(token))
	start := time.Now()
	resp, err := s.slackHTTP.Do(hreq)
	if err != nil {
		s.cm.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
		code := "slack_unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			code = "slack_timeout"
		}
		s.m.slackErrors.WithLabelValues(label, code).Inc()
		s.logger(ctx).Warn("slack call failed", "slack_method", method, "slack_error", code)
		return nil, "slack_unavailable", errf(http.StatusBadGateway, protocol.ErrSlackUnavailable)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.cfg.CallMaxResponse+1))
	s.cm.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		crypto.Wipe(body)
		retry := time.Second
		if n, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && n > 0 {
			retry = min(time.Duration(n)*time.Second, maxRetryAfter)
		}
		s.m.slackErrors.WithLabelValues(label, "ratelimited").Inc()
		return nil, "slack_rate_limited", &apiError{status: http.StatusTooManyRequests, msg: protocol.ErrRateLimited, retryAfter: retry}
	case err != nil || resp.StatusCode >= 500:
		crypto.Wipe(body)
		code := "slack_http_" + strconv.Itoa(resp.StatusCode)
		if err != nil {
			code = "slack_unreachable"
		}
		s.m.slackErrors.WithLabelValues(label, code).Inc()
		s.logger(ctx).Warn("slack call failed", "slack_method", method, "slack_error", code)
		return nil, "slack_unavailable", errf(http.StatusBadGateway, protocol.ErrSlackUnavailable)
	case int64(len(body)) > s.cfg.CallMaxResponse:
		crypto.Wipe(body)
		s.logger(ctx).Warn("slack response over the cap; refused", "slack_method", method, "cap_bytes", s.cfg.CallMaxResponse)
		return nil, ErrResponseTooLarge, errf(http.StatusBadGateway, "%s: Slack's answer is larger than %d bytes", ErrResponseTooLarge, s.cfg.CallMaxResponse)
	}
	var head struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if t := bytes.TrimSpace(body); len(t) == 0 || t[0] != '{' || json.Unmarshal(body, &head) != nil {
		crypto.Wipe(body)
		code := "slack_http_" + strconv.Itoa(resp.StatusCode)
		s.m.slackErrors.WithLabelValues(label, code).Inc()
		s.logger(ctx).Warn("slack answered without a JSON object", "slack_method", method, "status", resp.StatusCode)
		return nil, "slack_unavailable", errf(http.StatusBadGateway, protocol.ErrSlackUnavailable)
	}
	if head.OK {
		return body, "ok", nil
	}
	code := head.Error
	if !slackCodePattern.MatchString(code) {
		code = "unparsed"
	}
	s.m.slackErrors.WithLabelValues(label, code).Inc()
	switch code {
	case "token_revoked", "invalid_auth", "account_inactive":
		if rerr := s.st.RevokeInstallation(context.WithoutCancel(ctx), org, s.now()); rerr != nil {
			s.logger(ctx).Error("revoke installation failed", "err", rerr)
		}
		s.auditRevoked(ctx, org, code)
		s.logger(ctx).Warn("bot token rejected by slack; installation marked revoked", "slack_method", method, "slack_error", code)
	default:
		s.logger(ctx).Info("slack call answered ok=false", "slack_method", method, "slack_error", code)
	}
	return body, "slack_error", nil
}

// wipeReader is a request body that overwrites its buffer when the
// transport closes it (which may happen after Do returns), so the
// plaintext never outlives the request.
type wipeReader struct {
	mu  sync.Mutex
	b   []byte
	off int
}

func (r *wipeReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *wipeReader) Close() error {
	r.mu.Lock()
	crypto.Wipe(r.b)
	r.off = len(r.b)
	r.mu.Unlock()
	return nil
}

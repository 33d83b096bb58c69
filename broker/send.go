package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.SendRequest
	action := "unknown"
	outcome := "rejected"
	defer func() { s.m.sends.WithLabelValues(action, outcome).Inc() }()
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.fail(w, e)
		return
	}
	switch req.Action {
	case protocol.ActionPostMessage, protocol.ActionUpdate, protocol.ActionReact:
		action = req.Action
	default:
		s.fail(w, errf(http.StatusBadRequest, "%s: want %s, %s or %s", protocol.ErrUnknownAction,
			protocol.ActionPostMessage, protocol.ActionUpdate, protocol.ActionReact))
		return
	}
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
	a, e := s.authAgent(ctx, r, org, "", req.Timestamp,
		protocol.SendSigningBytes(org, req.Action, req.Timestamp, req.EncryptedBody, req.Nonce, req.Routing), req.Signature)
	if e != nil {
		s.fail(w, e)
		return
	}
	if o, e := s.useNonce(ctx, a.ID, req.Nonce); e != nil {
		outcome = o
		s.fail(w, e)
		return
	}
	if s.cfg.SendRate.Rate > 0 {
		ok, retry, err := s.st.Allow(ctx, "send:"+a.ID, s.cfg.SendRate, s.now())
		if err != nil {
			s.logger(ctx).Error("rate limit check failed", "err", err)
			outcome = "error"
			s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
			return
		}
		if !ok {
			outcome = "rate_limited"
			s.fail(w, &apiError{status: http.StatusTooManyRequests, msg: protocol.ErrRateLimited, retryAfter: retry})
			return
		}
	}
	resp, e := s.send(ctx, a, org, &req, ct, &nonce)
	if e != nil {
		switch {
		case e.status == http.StatusTooManyRequests:
			outcome = "slack_rate_limited"
		case e.status == http.StatusBadGateway:
			outcome = "slack_error"
		case e.status >= 500:
			outcome = "error"
		}
		s.fail(w, e)
		return
	}
	outcome = "ok"
	writeJSON(w, http.StatusOK, resp)
}

// send opens the body, decrypts the bot token and calls Slack. Plaintext
// buffers the broker owns are wiped before it returns.
func (s *Server) send(ctx context.Context, a *state.Agent, org string, req *protocol.SendRequest, ct []byte, nonce *[crypto.NonceSize]byte) (*protocol.SendResponse, *apiError) {
	inst, err := s.st.GetInstallation(ctx, org)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, errf(http.StatusNotFound, protocol.ErrOrgNotFound)
	case err != nil:
		s.logger(ctx).Error("installation lookup failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "state store unavailable")
	case inst.Revoked || inst.BotToken == "":
		return nil, errf(http.StatusBadGateway, "token_revoked")
	}
	pt, err := s.shared.Get(a.BoxPublicKey).Open(ct, nonce)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: does not decrypt with this agent's key")
	}
	defer crypto.Wipe(pt)
	var body protocol.SendBody
	if err := json.Unmarshal(pt, &body); err != nil {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: not a JSON object")
	}
	defer crypto.Wipe(body.Blocks)
	rt := req.Routing
	var opts []slack.MsgOption
	emoji := ""
	switch req.Action {
	case protocol.ActionPostMessage, protocol.ActionUpdate:
		if rt.Channel == "" || len(rt.Channel) > 256 {
			return nil, errf(http.StatusBadRequest, "invalid routing: channel is required")
		}
		if req.Action == protocol.ActionUpdate && rt.Timestamp == "" {
			return nil, errf(http.StatusBadRequest, "invalid routing: timestamp is required for chat.update")
		}
		if body.Text == "" && len(body.Blocks) == 0 {
			return nil, errf(http.StatusBadRequest, "invalid body: text or blocks required")
		}
		opts = append(opts, slack.MsgOptionText(body.Text, false))
		if len(body.Blocks) > 0 && string(body.Blocks) != "null" {
			var blocks slack.Blocks
			if err := json.Unmarshal(body.Blocks, &blocks); err != nil {
				return nil, errf(http.StatusBadRequest, "invalid body: blocks are not valid Block Kit JSON")
			}
			opts = append(opts, slack.MsgOptionBlocks(blocks.BlockSet...))
		}
		if req.Action == protocol.ActionPostMessage && rt.ThreadTS != "" {
			opts = append(opts, slack.MsgOptionTS(rt.ThreadTS))
		}
	case protocol.ActionReact:
		emoji = rt.Emoji
		if emoji == "" {
			emoji = body.Emoji
		}
		emoji = strings.Trim(emoji, ":")
		if rt.Channel == "" || rt.Timestamp == "" || emoji == "" || len(emoji) > 100 {
			return nil, errf(http.StatusBadRequest, "invalid routing: channel, timestamp and emoji are required for reactions.add")
		}
	}
	ref, e := s.auditIntent(ctx, audit.KindSend, req.Action, []string{rt.Channel}, len(pt))
	if e != nil {
		return nil, e
	}
	token, e := s.botToken(ctx, inst)
	if e != nil {
		return nil, e
	}
	defer crypto.Wipe(token)
	api := slack.New(string(token), slack.OptionAPIURL(s.cfg.SlackAPIURL), slack.OptionHTTPClient(s.slackHTTP))
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SlackTimeout)
	defer cancel()
	resp := &protocol.SendResponse{OK: true}
	switch req.Action {
	case protocol.ActionPostMessage:
		resp.Channel, resp.TS, err = api.PostMessageContext(cctx, rt.Channel, opts...)
	case protocol.ActionUpdate:
		resp.Channel, resp.TS, _, err = api.UpdateMessageContext(cctx, rt.Channel, rt.Timestamp, opts...)
	case protocol.ActionReact:
		err = api.AddReactionContext(cctx, emoji, slack.NewRefToMessage(rt.Channel, rt.Timestamp))
		resp.Channel, resp.TS = rt.Channel, rt.Timestamp
	}
	s.auditSendResult(ctx, ref, req.Action, rt.Channel, err)
	if err != nil {
		return nil, s.slackFailure(ctx, org, req.Action, err)
	}
	return resp, nil
}

// slackFailure maps a Slack call error to the response: 429 with
// Retry-After for rate limits, else 502 with Slack's error code. A revoked
// or invalid token marks the installation revoked.
func (s *Server) slackFailure(ctx context.Context, org, method string, err error) *apiError {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		s.m.slackErrors.WithLabelValues(method, "ratelimited").Inc()
		retry := rl.RetryAfter
		if retry <= 0 {
			retry = time.Second
		}
		return &apiError{status: http.StatusTooManyRequests, msg: protocol.ErrRateLimited, retryAfter: retry}
	}
	code := slackErrorCode(err)
	s.countSlackError(method, err)
	switch code {
	case "token_revoked", "invalid_auth", "account_inactive":
		if rerr := s.st.RevokeInstallation(context.WithoutCancel(ctx), org, s.now()); rerr != nil {
			s.logger(ctx).Error("revoke installation failed", "err", rerr)
		}
		s.auditRevoked(ctx, org, code)
		s.logger(ctx).Warn("bot token rejected by slack; installation marked revoked", "slack_error", code)
	default:
		s.logger(ctx).Info("slack call failed", "method", method, "slack_error", code)
	}
	return errf(http.StatusBadGateway, "%s", code)
}

func (s *Server) countSlackError(method string, err error) {
	s.m.slackErrors.WithLabelValues(method, slackErrorCode(err)).Inc()
}

// slackErrorCode returns Slack's error code, or a broker code for transport
// failures. It never returns request or response content.
func slackErrorCode(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && se.Err != "" && len(se.Err) <= 64 {
		return se.Err
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return "ratelimited"
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return "slack_http_" + strconv.Itoa(sc.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "slack_timeout"
	}
	return "slack_unreachable"
}

package broker

import (
	"context"
	"errors"
	"github.com/sealrelay/sealrelay/state"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// handleRenew serves POST /api/agent/renew (docs/protocol.md §8.3): checks
// as §4.4 with a send-style nonce, then a new access token; the previous
// one keeps working for Config.AccessTokenOverlap.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.RenewRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	resp, e := s.renew(ctx, r, &req)
	if e != nil {
		s.fail(w, e)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) renew(ctx context.Context, r *http.Request, req *protocol.RenewRequest) (*protocol.RenewResponse, *apiError) {
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		return nil, e
	}
	if err := req.Validate(); err != nil {
		return nil, errf(http.StatusBadRequest, "%s", err.Error())
	}
	a, e := s.authAgent(ctx, r, org, req.ProtocolVersion, req.Timestamp,
		protocol.RenewSigningBytes(org, req.Timestamp, req.Nonce), req.Signature)
	if e != nil {
		return nil, e
	}
	if _, e := s.useNonce(ctx, a.ID, req.Nonce); e != nil {
		return nil, e
	}
	access, err := crypto.RandomToken(32)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "internal error")
	}
	now := s.now()
	exp := now.Add(s.cfg.AccessTokenTTL).UTC()
	overlap := now.Add(s.cfg.AccessTokenOverlap).UTC()
	err = s.st.RenewAccessToken(ctx, a.ID, s.hk.Hash(KindAccessToken, access), exp, overlap)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, errf(http.StatusUnauthorized, protocol.ErrInvalidToken)
	case err != nil:
		s.logger(ctx).Error("renew access token failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	if a.AccessTokenExpiresAt.Before(overlap) {
		overlap = a.AccessTokenExpiresAt.UTC()
	}
	s.audit(ctx, audit.Event{Kind: audit.KindRenew, Agent: a.ID, Org: org, Outcome: "ok"})
	s.logger(ctx).Info("access token renewed", "expires_at", exp.Format(time.RFC3339),
		"previous_token_valid_until", overlap.Format(time.RFC3339))
	return &protocol.RenewResponse{
		OK:                         true,
		BrokerAccessToken:          access,
		BrokerAccessTokenExpiresAt: exp.Format(time.RFC3339),
		BrokerAccessTokenIssuedAt:  now.UTC().Format(time.RFC3339),
		PreviousTokenValidUntil:    overlap.Format(time.RFC3339),
	}, nil
}

// handleRekey serves POST /api/agent/rekey (docs/protocol.md §8.4): checks
// as §4.4 with the current signing key, the proof by the new signing key,
// a send-style nonce, then the agent's keys are replaced.
func (s *Server) handleRekey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.RekeyRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	if e := s.rekey(ctx, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	writeJSON(w, http.StatusOK, protocol.RekeyResponse{OK: true})
}

func (s *Server) rekey(ctx context.Context, r *http.Request, req *protocol.RekeyRequest) *apiError {
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		return e
	}
	keys, err := req.Validate()
	if err != nil {
		return errf(http.StatusBadRequest, "%s", err.Error())
	}
	signed := protocol.RekeySigningBytes(org, req.Timestamp, req.ServerPubkey, req.ServerSigningPubkey, req.Nonce)
	a, e := s.authAgent(ctx, r, org, req.ProtocolVersion, req.Timestamp, signed, req.Signature)
	if e != nil {
		return e
	}
	if !protocol.VerifySignature(keys.Signing, signed, req.NewKeySignature) {
		return errf(http.StatusForbidden, protocol.ErrInvalidNewKeySignature)
	}
	if _, e := s.useNonce(ctx, a.ID, req.Nonce); e != nil {
		return e
	}
	err = s.st.RekeyAgent(ctx, a.ID, keys.Box, keys.Signing)
	if err == nil {
		s.audit(ctx, audit.Event{Kind: audit.KindRekey, Agent: a.ID, Org: org, Outcome: "ok"})
	}
	switch {
	case errors.Is(err, state.ErrAgentExists):
		return errf(http.StatusConflict, "agent %s: the new signing key is registered to another agent; generate new keys", protocol.ErrAlreadyActive)
	case errors.Is(err, state.ErrNotFound):
		return errf(http.StatusUnauthorized, protocol.ErrInvalidToken)
	case err != nil:
		s.logger(ctx).Error("rekey agent failed", "err", err)
		return errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	if keys.Box != a.BoxPublicKey {
		s.shared.Forget(a.BoxPublicKey)
	}
	s.logger(ctx).Info("agent keys replaced", "box_public_key", keys.Box.String(),
		"signing_public_key", keys.Signing.String())
	return nil
}

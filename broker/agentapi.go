package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/boundedcache"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
)

// maxAckIDs bounds message_ids in one ack.
const maxAckIDs = 1000

// bearerToken extracts the Authorization bearer token.
func bearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return ""
	}
	return strings.TrimSpace(h[7:])
}

// authAgent runs checks 4–8 of protocol §4.4 for org: bearer token present,
// known and unexpired (401) → belongs to org (403) → protocol_version (400)
// → timestamp window (400) → signature over signed (403).
func (s *Server) authAgent(ctx context.Context, r *http.Request, org, version string, ts int64, signed []byte, sig string) (*state.Agent, *apiError) {
	return s.authenticate(ctx, r, org, version, ts, signed, sig, false)
}

// authPull is authAgent for inbox.pull, whose signed bytes carry no nonce:
// every check runs as in authAgent, but the Ed25519 verification is skipped
// when this replica has already verified exactly these signed bytes and
// this signature under the agent's current signing key (pullSigCache).
func (s *Server) authPull(ctx context.Context, r *http.Request, org, version string, ts int64, signed []byte, sig string) (*state.Agent, *apiError) {
	return s.authenticate(ctx, r, org, version, ts, signed, sig, true)
}

// authenticate is authAgent; pull selects the pull signature cache for the
// last check.
func (s *Server) authenticate(ctx context.Context, r *http.Request, org, version string, ts int64, signed []byte, sig string, pull bool) (*state.Agent, *apiError) {
	tok := bearerToken(r)
	if tok == "" {
		return nil, errf(http.StatusUnauthorized, protocol.ErrMissingToken)
	}
	if len(tok) > 512 {
		return nil, errf(http.StatusUnauthorized, protocol.ErrInvalidToken)
	}
	// The token and its agent in one store call (one Redis round trip
	// once this replica knows the token's agent): unknown or expired
	// token, or an agent that is gone, are all 401.
	g, a, err := s.st.LookupAgentByAccessToken(ctx, s.hk.Hash(KindAccessToken, tok), s.now())
	switch {
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrExpired):
		return nil, errf(http.StatusUnauthorized, protocol.ErrInvalidToken)
	case err != nil:
		s.logger(ctx).Error("access token lookup failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	info(ctx).agent = a.ID
	if !crypto.EqualString(a.OrgID, org) || !crypto.EqualString(g.OrgID, org) {
		return nil, errf(http.StatusForbidden, protocol.ErrTokenOrgMismatch)
	}
	if version != "" && version != protocol.Version {
		return nil, errf(http.StatusBadRequest, "%s: want %s", protocol.ErrUnsupportedVersion, protocol.Version)
	}
	if d := s.now().Unix() - ts; d > protocol.TimestampWindow || d < -protocol.TimestampWindow {
		return nil, errf(http.StatusBadRequest, protocol.ErrTimestampWindow)
	}
	if pull {
		if !s.verifyPullSignature(a, signed, sig) {
			return nil, errf(http.StatusForbidden, protocol.ErrInvalidSignature)
		}
	} else if !protocol.VerifySignature(a.SigningPublicKey, signed, sig) {
		return nil, errf(http.StatusForbidden, protocol.ErrInvalidSignature)
	}
	return a, nil
}

// verifyPullSignature checks the inbox.pull signature sig over signed by
// a's signing key, answering from the pull signature cache when this
// replica verified the same bytes and signature for that key before, and
// remembering a successful verification.
func (s *Server) verifyPullSignature(a *state.Agent, signed []byte, sig string) bool {
	if s.pullSigs.verified(a.ID, a.SigningPublicKey, signed, sig) {
		s.m.pullSigCacheHits.Inc()
		return true
	}
	if !protocol.VerifySignature(a.SigningPublicKey, signed, sig) {
		return false
	}
	s.pullSigs.remember(a.ID, a.SigningPublicKey, signed, sig)
	return true
}

// pullSigCacheMax bounds the agents whose last verified pull a replica
// remembers (one entry of a few hundred bytes each; a full cache evicts
// the oldest, which then costs that agent one verification).
const pullSigCacheMax = 10000

// verifiedPull is one agent's last inbox.pull that passed Ed25519
// verification on this replica. It is never modified after it is stored.
type verifiedPull struct {
	key    crypto.SigningPublicKey
	signed []byte
	sig    string
}

// pullSigCache remembers, per agent, the last inbox.pull whose signature
// this replica verified. protocol §4.4 gives pulls no nonce, so a bridge
// that pulls again within the same second sends byte-identical signed
// bytes and (Ed25519 being deterministic) the same signature; verifying it
// again would give the same answer. Only successful verifications are
// stored; a hit needs the same agent, the same signing public key (a rekey
// misses), the same signed bytes and the same signature string (any other
// signature, such as a non-canonical or tampered one, is verified
// normally). It is a cache of a pure function's positive results, not a
// replay cache: nothing is ever refused because of it. Each replica keeps
// its own; none is shared.
type pullSigCache struct {
	c *boundedcache.Cache[string, *verifiedPull] // agent id →
}

func newPullSigCache() *pullSigCache {
	return &pullSigCache{c: boundedcache.New(boundedcache.Options[string, *verifiedPull]{Max: pullSigCacheMax})}
}

// verified reports whether agentID's last verified pull was exactly signed
// and sig under key.
func (c *pullSigCache) verified(agentID string, key crypto.SigningPublicKey, signed []byte, sig string) bool {
	v, ok := c.c.Get(agentID)
	if !ok {
		return false
	}
	// Constant-time compares, all three run: the answer's timing must not
	// tell a caller how much of a guessed signature was right.
	sameKey := crypto.Equal(v.key[:], key[:])
	sameBytes := crypto.Equal(v.signed, signed)
	sameSig := crypto.EqualString(v.sig, sig)
	return sameKey && sameBytes && sameSig
}

// remember records that sig over signed verified under key for agentID.
func (c *pullSigCache) remember(agentID string, key crypto.SigningPublicKey, signed []byte, sig string) {
	c.c.Put(agentID, &verifiedPull{key: key, signed: signed, sig: sig})
}

// forget drops agentID's entry (the agent was removed).
func (c *pullSigCache) forget(agentID string) { c.c.Delete(agentID) }

// resolveOrg applies §3/§4.4 step 3 and records the org for logging.
func resolveOrg(ctx context.Context, orgID, workspaceID string) (string, *apiError) {
	org, err := protocol.ResolveOrgID(orgID, workspaceID)
	if err != nil {
		return "", errf(http.StatusBadRequest, "%s", err.Error())
	}
	info(ctx).org = org
	return org, nil
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req registerRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.m.registrations.WithLabelValues("bad_request").Inc()
		s.fail(w, e)
		return
	}
	resp, e := s.register(ctx, &req.RegisterRequest, declaresRespond(req.Capabilities))
	if e != nil {
		outcome := "rejected"
		if e.status >= 500 {
			outcome = "error"
		}
		s.m.registrations.WithLabelValues(outcome).Inc()
		s.fail(w, e)
		return
	}
	s.m.registrations.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) register(ctx context.Context, req *protocol.RegisterRequest, respond bool) (*protocol.RegisterResponse, *apiError) {
	token := req.Token()
	if token == "" {
		return nil, errf(http.StatusBadRequest, protocol.ErrMissingRegistrationProof)
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		return nil, e
	}
	box, err := crypto.ParseBoxPublicKey(req.ServerPubkey)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "invalid server_pubkey: want standard base64 of a 32-byte X25519 key")
	}
	if crypto.ValidateBoxPublicKey(box) != nil {
		return nil, errf(http.StatusBadRequest, "invalid server_pubkey: low-order X25519 point")
	}
	sig, err := crypto.ParseSigningPublicKey(req.ServerSigningPubkey)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "invalid server_signing_pubkey: want standard base64 of a 32-byte Ed25519 key")
	}
	inst, err := s.st.GetInstallation(ctx, org)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, errf(http.StatusNotFound, "%s: install the Slack app first", protocol.ErrOrgNotFound)
	case err != nil:
		s.logger(ctx).Error("installation lookup failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "state store unavailable")
	case inst.Revoked:
		return nil, errf(http.StatusNotFound, "%s: the Slack app was uninstalled; reinstall it", protocol.ErrOrgNotFound)
	}
	if len(token) < protocol.MinRegistrationTokenLength || len(token) > 512 {
		return nil, errf(http.StatusForbidden, protocol.ErrInvalidRegistrationToken)
	}
	access, err := crypto.RandomToken(32)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "internal error")
	}
	idb, err := crypto.RandomBytes(12)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "internal error")
	}
	now := s.now()
	a := &state.Agent{
		ID: "ag-" + hex.EncodeToString(idb), OrgID: org, BoxPublicKey: box, SigningPublicKey: sig,
		CreatedAt: now.UTC(), AccessTokenHash: s.hk.Hash(KindAccessToken, access),
		AccessTokenExpiresAt: now.Add(s.cfg.AccessTokenTTL).UTC(),
	}
	if respond {
		a.RespondUntil = now.Add(s.cfg.RespondCapabilityTTL).UTC()
	}
	res, err := s.st.Register(ctx, s.hk.Hash(KindRegistrationToken, token), a, now, s.cfg.AgentsPerOrg)
	switch {
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrExpired):
		return nil, errf(http.StatusForbidden, protocol.ErrInvalidRegistrationToken)
	case errors.Is(err, state.ErrUsed):
		return nil, errf(http.StatusForbidden, protocol.ErrRegistrationTokenUsed)
	case errors.Is(err, state.ErrAgentExists):
		return nil, errf(http.StatusConflict, "agent %s: unregister it first or use new keys", protocol.ErrAlreadyActive)
	case errors.Is(err, state.ErrOrgFull):
		return nil, errf(http.StatusConflict, "workspace %s: this broker allows %d agent(s) per workspace; unregister one first", protocol.ErrAlreadyActive, s.cfg.AgentsPerOrg)
	case err != nil:
		s.logger(ctx).Error("register agent failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	info(ctx).agent = a.ID
	s.depth.track(a.ID, org)
	s.audit(ctx, audit.Event{Kind: audit.KindRegister, Outcome: "ok"})
	s.logger(ctx).Info("agent registered", "mode", res.Mode, "replaced", len(res.Replaced))
	s.afterReplace(ctx, res.Replaced)
	return &protocol.RegisterResponse{
		OK:                         true,
		BrokerPubkey:               s.keys.Box.Public.String(),
		BrokerSigningPubkey:        s.keys.Signing.Public().String(),
		BrokerAccessToken:          access,
		BrokerAccessTokenExpiresAt: a.AccessTokenExpiresAt.Format(time.RFC3339),
		BrokerAccessTokenScopes:    append([]string(nil), protocol.DefaultScopes...),
	}, nil
}

func (s *Server) handleUnregister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.UnregisterRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.fail(w, e)
		return
	}
	a, e := s.authAgent(ctx, r, org, "", req.Timestamp, protocol.UnregisterSigningBytes(org, req.Timestamp), req.Signature)
	if e != nil {
		s.fail(w, e)
		return
	}
	fresh, err := s.st.UseSignature(ctx, s.hk.Hash(KindUnregisterSig, req.Signature), 2*protocol.TimestampWindow*time.Second)
	if err != nil {
		s.logger(ctx).Error("replay record failed", "err", err)
		s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
		return
	}
	if !fresh {
		s.fail(w, errf(http.StatusConflict, protocol.ErrReplay))
		return
	}
	if err := s.st.DeleteAgent(ctx, a.ID); err != nil && !errors.Is(err, state.ErrNotFound) {
		s.logger(ctx).Error("delete agent failed", "err", err)
		s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
		return
	}
	if err := s.q.DeleteInbox(ctx, a.ID); err != nil {
		// The agent is gone; its inbox ages out with the queue's retention.
		s.logger(ctx).Warn("delete inbox failed", "err", err)
	}
	s.shared.Forget(a.BoxPublicKey)
	s.depth.forget(a.ID)
	s.pullSigs.forget(a.ID)
	s.audit(ctx, audit.Event{Kind: audit.KindUnregister, Outcome: "ok"})
	s.logger(ctx).Info("agent unregistered")
	writeOK(w)
}

func (s *Server) handlePull(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.PullRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.m.pullsBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.m.pullsBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	maxN, wait, err := req.Limits()
	if err != nil {
		s.m.pullsBy.with("rejected").Inc()
		s.fail(w, errf(http.StatusBadRequest, "%s", err.Error()))
		return
	}
	a, e := s.authPull(ctx, r, org, req.ProtocolVersion, req.Timestamp,
		protocol.PullSigningBytes(org, req.Timestamp, maxN, wait), req.Signature)
	if e != nil {
		s.m.pullsBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	s.depth.track(a.ID, org)
	s.recordPull(ctx, a)
	s.noteCapabilities(ctx, a, req.Meta)
	s.flushDrops(ctx, a)
	msgs, e := s.pull(ctx, a, maxN, time.Duration(wait)*time.Second)
	if e != nil {
		s.m.pullsBy.with("error").Inc()
		s.fail(w, e)
		return
	}
	s.m.pullsBy.with("ok").Inc()
	s.m.pulledMessages.Add(float64(len(msgs)))
	writePullResponse(w, msgs)
}

type pollStart int

const (
	pollStarted pollStart = iota
	pollCapped
	pollClosing
)

// beginLongPoll registers a waiting pull of agentID unless the server is
// shutting down or the agent is at its cap. Both checks happen under pollsMu,
// so no long poll joins pollWG after Shutdown started waiting on it.
func (s *Server) beginLongPoll(agentID string) pollStart {
	s.pollsMu.Lock()
	defer s.pollsMu.Unlock()
	switch {
	case s.closing:
		return pollClosing
	case s.polls[agentID] >= s.cfg.MaxLongPollsPerAgent:
		return pollCapped
	}
	s.polls[agentID]++
	s.pollWG.Add(1)
	s.m.longPolls.Inc()
	if s.onLongPoll != nil {
		s.onLongPoll(agentID)
	}
	return pollStarted
}

func (s *Server) endLongPoll(agentID string) {
	s.pollsMu.Lock()
	if s.polls[agentID]--; s.polls[agentID] <= 0 {
		delete(s.polls, agentID)
	}
	s.pollsMu.Unlock()
	s.m.longPolls.Dec()
	s.pollWG.Done()
}

// pull leases messages for a, waiting up to wait (released early by
// Shutdown). It caps concurrent waiting pulls per agent.
func (s *Server) pull(ctx context.Context, a *state.Agent, maxN int, wait time.Duration) ([]protocol.InboxMessage, *apiError) {
	if wait > LongPollMax {
		wait = LongPollMax
	}
	started := false
	if wait > 0 {
		switch s.beginLongPoll(a.ID) {
		case pollClosing:
			wait = 0 // shutting down: answer at once
		case pollCapped:
			return nil, &apiError{status: http.StatusTooManyRequests, retryAfter: time.Second,
				msg: protocol.ErrRateLimited + ": too many concurrent long polls for this agent"}
		case pollStarted:
			started = true
			defer s.endLongPoll(a.ID)
		}
	}
	if started {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		defer s.revokeWatch.watch(a.ID, cancel)() // a revoke ends this wait (admin_server.go)
		go func() {
			select {
			case <-s.shutdown:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	qm, err := s.q.Pull(ctx, a.ID, maxN, wait)
	if err != nil {
		if ctx.Err() != nil {
			// Released by Shutdown or the client went away: answer empty.
			return []protocol.InboxMessage{}, nil
		}
		s.logger(ctx).Error("inbox pull failed", "err", err)
		return nil, errf(http.StatusServiceUnavailable, "inbox store unavailable")
	}
	out := make([]protocol.InboxMessage, 0, len(qm))
	for _, m := range qm {
		im, err := protocol.ParseStored(m.ID, m.Body)
		if err != nil {
			// Not ours: drop it so it cannot block the inbox.
			s.logger(ctx).Error("malformed inbox message acked", "message_id", m.ID, "err", err)
			_, _ = s.q.Ack(context.WithoutCancel(ctx), a.ID, []string{m.Receipt})
			continue
		}
		out = append(out, im)
	}
	return out, nil
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req protocol.AckRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.m.acksBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.m.acksBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	if len(req.MessageIDs) > maxAckIDs {
		s.m.acksBy.with("rejected").Inc()
		s.fail(w, errf(http.StatusBadRequest, "invalid message_ids: at most %d per ack", maxAckIDs))
		return
	}
	a, e := s.authAgent(ctx, r, org, req.ProtocolVersion, req.Timestamp,
		protocol.AckSigningBytes(org, req.Timestamp, req.MessageIDs), req.Signature)
	if e != nil {
		s.m.acksBy.with("rejected").Inc()
		s.fail(w, e)
		return
	}
	// Bare ids only: a receipt suffix ("#n") is not part of the wire id.
	ids := make([]string, 0, len(req.MessageIDs))
	for _, id := range req.MessageIDs {
		if id != "" && !strings.Contains(id, "#") {
			ids = append(ids, id)
		}
	}
	n := 0
	if len(ids) > 0 {
		var err error
		n, err = s.q.Ack(ctx, a.ID, ids)
		if err != nil && !errors.Is(err, queue.ErrInvalidArgument) {
			s.m.acksBy.with("error").Inc()
			s.logger(ctx).Error("inbox ack failed", "err", err)
			s.fail(w, errf(http.StatusServiceUnavailable, "inbox store unavailable"))
			return
		}
	}
	if n > 0 {
		s.flushDrops(ctx, a) // room was made: queue a waiting notice now
	}
	s.m.acksBy.with("ok").Inc()
	s.m.ackedMessages.Add(float64(n))
	writeJSON(w, http.StatusOK, protocol.AckResponse{OK: true, Acked: n})
}

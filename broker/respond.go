package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
)

// MaxRespondBody bounds the JSON object an inbox.respond carries (§8.2).
const MaxRespondBody = 64 << 10

// handleRespond serves POST /api/inbox/respond (protocol §8.2): the first
// valid respond for a held Slack request, from any agent of its org on any
// replica, becomes Slack's response body. Check order: 4.4's, then the
// message_id format (400), replay (409), then the body (400).
func (s *Server) handleRespond(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	outcome := "rejected"
	defer func() { s.rm.responds.WithLabelValues(outcome).Inc() }()
	var req protocol.RespondRequest
	if e := decodeJSON(w, r, &req); e != nil {
		s.fail(w, e)
		return
	}
	org, e := resolveOrg(ctx, req.OrgID, req.WorkspaceID)
	if e != nil {
		s.fail(w, e)
		return
	}
	a, e := s.authAgent(ctx, r, org, req.ProtocolVersion, req.Timestamp,
		protocol.RespondSigningBytes(org, req.Timestamp, req.MessageID, req.EncryptedBody, req.Nonce), req.Signature)
	if e != nil {
		s.fail(w, e)
		return
	}
	if queue.ValidateID(req.MessageID) != nil {
		s.fail(w, errf(http.StatusBadRequest, "invalid message_id: want the message_id of a pulled message"))
		return
	}
	nonce, e := parseNonce(req.Nonce)
	if e != nil {
		s.fail(w, e)
		return
	}
	if o, e := s.useNonce(ctx, a.ID, req.Nonce); e != nil {
		outcome = o
		s.fail(w, e)
		return
	}
	pt, e := s.openRespondBody(a, req.EncryptedBody, &nonce)
	if e != nil {
		s.fail(w, e)
		return
	}
	delivered, outc, e := s.deliverRespond(ctx, org, req.MessageID, pt)
	crypto.Wipe(pt)
	outcome = outc
	if e != nil {
		s.fail(w, e)
		return
	}
	writeJSON(w, http.StatusOK, protocol.RespondResponse{OK: true, Delivered: delivered})
}

// openRespondBody decrypts a respond's body and checks it is a JSON object
// of at most MaxRespondBody bytes. The caller wipes the result.
func (s *Server) openRespondBody(a *state.Agent, encrypted string, nonce *[crypto.NonceSize]byte) ([]byte, *apiError) {
	if base64.StdEncoding.DecodedLen(len(encrypted)) > MaxRespondBody+crypto.BoxOverhead+3 {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: the answer must be at most %d bytes", MaxRespondBody)
	}
	ct, err := base64.StdEncoding.DecodeString(encrypted)
	if err != nil || len(ct) < crypto.BoxOverhead {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: want standard base64 of a crypto_box ciphertext")
	}
	if len(ct) > MaxRespondBody+crypto.BoxOverhead {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: the answer must be at most %d bytes", MaxRespondBody)
	}
	pt, err := s.shared.Get(a.BoxPublicKey).Open(ct, nonce)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: does not decrypt with this agent's key")
	}
	if t := bytes.TrimLeft(pt, " \t\r\n"); len(t) == 0 || t[0] != '{' || !json.Valid(pt) {
		crypto.Wipe(pt)
		return nil, errf(http.StatusBadRequest, "invalid encrypted_body: the answer must be a JSON object")
	}
	return pt, nil
}

// deliverRespond hands answer to the held request id, if this respond is
// the first for it. It returns delivered and the metrics outcome.
func (s *Server) deliverRespond(ctx context.Context, org, id string, answer []byte) (bool, string, *apiError) {
	if !isHoldID(id) {
		s.logger(ctx).Info("respond for a message that was not held", "message_id", id)
		return false, "not_held", nil
	}
	sealed, err := crypto.SealAnonymous(answer, s.keys.Box.Public)
	if err != nil {
		s.logger(ctx).Error("sealing a respond failed", "err", err)
		return false, "error", errf(http.StatusInternalServerError, "internal error")
	}
	res, err := s.holds.Claim(ctx, id, org, sealed)
	if err != nil {
		s.logger(ctx).Error("respond claim failed", "message_id", id, "err", err)
		return false, "error", errf(http.StatusServiceUnavailable, "state store unavailable")
	}
	switch res {
	case claimWon:
		return true, "delivered", nil
	case claimLate:
		s.rm.late.Inc()
		s.logger(ctx).Warn("respond came after the held request's deadline; Slack got an empty answer", "message_id", id)
		return false, "late", nil
	case claimAnswered:
		s.logger(ctx).Info("respond for a held request another respond answered", "message_id", id)
		return false, "duplicate", nil
	}
	s.logger(ctx).Info("respond for a message that was not held", "message_id", id)
	return false, "not_held", nil
}

// declaresRespond reports whether a capability list names inbox.respond.
func declaresRespond(caps []string) bool {
	return slices.Contains(caps, protocol.CapabilityRespond)
}

// pullMeta is the part of a pull's unsigned meta the broker reads.
type pullMeta struct {
	Capabilities []string `json:"capabilities"`
}

// noteCapabilities keeps the agent's inbox.respond declaration fresh from
// the unsigned meta of its pull: declared, RespondUntil is pushed to
// now+RespondCapabilityTTL (written at most once per half TTL); not
// declared, a live one is cleared. Failures only log: a pull never fails
// for it.
func (s *Server) noteCapabilities(ctx context.Context, a *state.Agent, meta json.RawMessage) {
	cs := s.st
	var m pullMeta
	if len(meta) > 0 && json.Unmarshal(meta, &m) != nil {
		m = pullMeta{}
	}
	now := s.now()
	var until time.Time
	switch {
	case declaresRespond(m.Capabilities):
		if a.RespondUntil.After(now.Add(s.cfg.RespondCapabilityTTL / 2)) {
			return
		}
		until = now.Add(s.cfg.RespondCapabilityTTL)
	case a.RespondUntil.After(now):
		// until stays zero: cleared
	default:
		return
	}
	if err := cs.SetRespondUntil(ctx, a.ID, until); err != nil {
		s.logger(ctx).Warn("recording the agent's inbox.respond capability failed", "err", err)
		return
	}
	a.RespondUntil = until
}

// registerRequest is a registration with the §8.2 capabilities a sealrelay
// bridge declares.
type registerRequest struct {
	protocol.RegisterRequest
	Capabilities []string `json:"capabilities,omitempty"`
}

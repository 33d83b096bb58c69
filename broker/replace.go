package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// KindMintGrant is the hash kind of the install page's one-time mint
// grants (see handleMintReplace).
const KindMintGrant = "mint-grant"

// AuditOutcomeReplaced is the outcome of the revoke audit record of an
// agent deleted by a replace registration.
const AuditOutcomeReplaced = "replaced"

// maxMintForm bounds the body of the install page's mint POST.
const maxMintForm = 4 << 10

// ErrNoInstallation wraps MintRegistrationToken's refusal for an org the
// Slack app is not installed in (or was uninstalled from).
var ErrNoInstallation = errors.New("no installation")

// MintRegistrationToken issues a fresh registration token of mode for
// org, valid for Config.RegistrationTokenTTL; only its keyed hash is
// stored. The error wraps ErrNoInstallation when the app is not installed
// in org, ErrInvalidAdminArgument when org cannot be an org id.
func (s *Server) MintRegistrationToken(ctx context.Context, org string, mode state.RegistrationMode) (token string, expiresAt time.Time, err error) {
	if err := protocol.ValidateID(org); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: org: %v", ErrInvalidAdminArgument, err)
	}
	if _, err := state.ParseRegistrationMode(string(mode)); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %v", ErrInvalidAdminArgument, err)
	}
	inst, err := s.st.GetInstallation(ctx, org)
	switch {
	case errors.Is(err, state.ErrNotFound):
		return "", time.Time{}, fmt.Errorf("org %s: %w", org, ErrNoInstallation)
	case err != nil:
		return "", time.Time{}, fmt.Errorf("installation of %s: %w", org, err)
	case inst.Revoked:
		return "", time.Time{}, fmt.Errorf("org %s (uninstalled): %w", org, ErrNoInstallation)
	}
	return s.putRegistrationToken(ctx, org, mode)
}

// putRegistrationToken stores a fresh token of mode for org.
func (s *Server) putRegistrationToken(ctx context.Context, org string, mode state.RegistrationMode) (string, time.Time, error) {
	tok, err := crypto.RandomToken(32)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("registration token: %w", err)
	}
	exp := s.now().Add(s.cfg.RegistrationTokenTTL).UTC()
	if err := s.st.PutRegistrationTokenMode(ctx, s.hk.Hash(KindRegistrationToken, tok), org, mode, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("store registration token: %w", err)
	}
	return tok, exp, nil
}

// putMintGrant stores a one-time grant that lets the browser that just
// finished the OAuth install of org mint one replace token by POST; the
// secret travels in the page's form, never in a URL.
func (s *Server) putMintGrant(ctx context.Context, org string) (string, error) {
	g, err := crypto.RandomToken(32)
	if err != nil {
		return "", fmt.Errorf("mint grant: %w", err)
	}
	if err := s.st.PutMintGrant(ctx, s.hk.Hash(KindMintGrant, g), org, s.now().Add(state.DefaultMintGrantTTL)); err != nil {
		return "", fmt.Errorf("store mint grant: %w", err)
	}
	return g, nil
}

// handleMintReplace is POST /slack/install/replace-token: the install
// page's "replace the current agents" button. The form carries the page's
// one-time mint grant; consuming it mints one replace token, shown once.
func (s *Server) handleMintReplace(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxMintForm)
	if err := r.ParseForm(); err != nil {
		s.htmlError(w, http.StatusBadRequest, "Invalid request", "The form could not be read. Start again from /slack/install.")
		return
	}
	grant := r.PostForm.Get("grant")
	if grant == "" || len(grant) > 256 {
		s.htmlError(w, http.StatusBadRequest, "Invalid request", "The form lacks its one-time grant. Start again from /slack/install.")
		return
	}
	org, err := s.st.ConsumeMintGrant(ctx, s.hk.Hash(KindMintGrant, grant), s.now())
	switch {
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrExpired):
		s.m.installs.WithLabelValues("bad_grant").Inc()
		s.htmlError(w, http.StatusBadRequest, "Invalid or expired link", "This button was already used or has expired. Install the app again from /slack/install to get a new one.")
		return
	case err != nil:
		s.logger(ctx).Error("consume mint grant failed", "err", err)
		s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The broker cannot reach its store. Try again later.")
		return
	}
	info(ctx).org = org
	inst, err := s.st.GetInstallation(ctx, org)
	if err != nil || inst.Revoked {
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			s.logger(ctx).Error("installation lookup failed", "err", err)
			s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The broker cannot reach its store. Try again later.")
			return
		}
		s.htmlError(w, http.StatusNotFound, "Not installed", "The Slack app is no longer installed. Install it again from /slack/install.")
		return
	}
	tok, exp, err := s.putRegistrationToken(ctx, org, state.RegistrationReplace)
	if err != nil {
		s.logger(ctx).Error("mint replace token failed", "err", err)
		s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The token could not be stored. Try again later.")
		return
	}
	s.logger(ctx).Info("replace registration token minted from the install page")
	s.writePage(w, http.StatusOK, s.tokenPage(inst, tok, exp, state.RegistrationReplace, ""))
}

// afterReplace cleans up after a replace registration deleted agents: their
// inboxes, last pulls and this process's caches go, waiting pulls end, and
// each is audited as revoke/replaced. The agents are already gone (their
// next request is answered 401); a failed cleanup only logs.
func (s *Server) afterReplace(ctx context.Context, replaced []*state.Agent) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
	defer cancel()
	for _, a := range replaced {
		if err := s.q.DeleteInbox(cctx, a.ID); err != nil {
			s.logger(ctx).Warn("delete inbox of replaced agent failed; retention removes it", "replaced_agent_id", a.ID, "err", err)
		}
		if err := s.st.ForgetPull(cctx, a.ID); err != nil {
			s.logger(ctx).Warn("forget last pull of replaced agent failed", "replaced_agent_id", a.ID, "err", err)
		}
		s.shared.Forget(a.BoxPublicKey)
		s.depth.forget(a.ID)
		s.pullMarks.undo(a.ID)
		s.idle.forget(a.ID)
		s.revokeWatch.cancel(a.ID)
		s.audit(ctx, audit.Event{Kind: audit.KindRevoke, Agent: a.ID, Org: a.OrgID, Outcome: AuditOutcomeReplaced})
		s.logger(ctx).Info("agent replaced by a new registration", "replaced_agent_id", a.ID)
	}
}

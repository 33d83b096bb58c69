package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// refreshPoll is how often a replica waiting for another replica's bot
// token refresh re-reads the installation.
const refreshPoll = 50 * time.Millisecond

// Outcomes of the installation updates of a refresh (returned by the
// UpdateInstallation callbacks, so nothing is written).
var (
	// errRefreshRevoked: the installation was revoked (app_uninstalled,
	// tokens_revoked, invalid_auth) before or during the refresh.
	errRefreshRevoked = errors.New("installation revoked")
	// errRefreshDone: another request already stored a newer token.
	errRefreshDone = errors.New("bot token already refreshed")
	// errRefreshBusy: another replica holds the refresh lease.
	errRefreshBusy = errors.New("bot token refresh in progress elsewhere")
)

// botToken returns the plaintext bot token (caller wipes it), first
// refreshing a rotating token that expires within Config.TokenRefreshMargin.
// A failed refresh is logged and the current token used while it lasts; an
// installation revoked meanwhile answers 502 token_revoked.
func (s *Server) botToken(ctx context.Context, inst *state.Installation) ([]byte, *apiError) {
	if s.needsRefresh(inst) {
		fresh, err := s.refreshBotToken(ctx, inst.OrgID, inst.BotRefreshToken)
		switch {
		case errors.Is(err, errRefreshRevoked):
			return nil, errf(http.StatusBadGateway, "token_revoked")
		case err != nil:
			s.countSlackError("oauth.v2.access", err)
			s.logger(ctx).Warn("bot token refresh failed", "slack_error", slackErrorCode(err))
		default:
			inst = fresh
		}
	}
	tok, err := s.keys.Keyring.Decrypt(inst.BotToken, inst.OrgID)
	if err != nil {
		s.logger(ctx).Error("stored bot token does not decrypt", "err", err)
		return nil, errf(http.StatusInternalServerError, "stored bot token does not decrypt; reinstall the app or check the master keyring")
	}
	return tok, nil
}

// needsRefresh reports whether inst has a rotating bot token that expires
// within the refresh margin.
func (s *Server) needsRefresh(inst *state.Installation) bool {
	return inst.BotRefreshToken != "" && !inst.BotTokenExpiresAt.IsZero() &&
		s.now().Add(s.cfg.TokenRefreshMargin).After(inst.BotTokenExpiresAt)
}

// refreshLeaseTTL bounds how long one replica may hold the refresh lease:
// the Slack call's timeout and a margin for the two state writes.
func (s *Server) refreshLeaseTTL() time.Duration { return s.cfg.SlackTimeout + 5*time.Second }

// refreshBotToken exchanges the refresh token for a new bot token (token
// rotation) and stores both; seen is the stored refresh token the caller
// found due. It is single-flight: in this process one request per org at a
// time gets here (refreshLocks), and across replicas the one that takes the
// refresh lease stored in the installation (RefreshLease, set atomically by
// UpdateInstallation) calls Slack while the others wait for its result. A
// token someone else refreshed meanwhile is returned as is.
func (s *Server) refreshBotToken(ctx context.Context, org, seen string) (*state.Installation, error) {
	unlock, err := s.refreshLocks.lock(ctx, org)
	if err != nil {
		return nil, err
	}
	defer unlock()
	lease, err := crypto.RandomToken(16)
	if err != nil {
		return nil, err
	}
	for {
		inst, err := s.st.GetInstallation(ctx, org)
		switch {
		case errors.Is(err, state.ErrNotFound):
			return nil, errRefreshRevoked
		case err != nil:
			return nil, err
		case inst.Revoked || inst.BotToken == "":
			return nil, errRefreshRevoked
		case inst.BotRefreshToken != seen || !s.needsRefresh(inst):
			return inst, nil
		}
		var due *state.Installation
		err = s.st.UpdateInstallation(ctx, org, func(cur *state.Installation) error {
			switch {
			case cur.Revoked || cur.BotToken == "":
				return errRefreshRevoked
			case cur.BotRefreshToken != seen || !s.needsRefresh(cur):
				return errRefreshDone
			case cur.RefreshLease != "" && s.now().Before(cur.RefreshLeaseUntil):
				return errRefreshBusy
			}
			cur.RefreshLease, cur.RefreshLeaseUntil = lease, s.now().Add(s.refreshLeaseTTL()).UTC()
			c := *cur
			due = &c
			return nil
		})
		switch {
		case errors.Is(err, errRefreshDone):
			continue
		case errors.Is(err, errRefreshBusy):
			if err := waitCtx(ctx, refreshPoll); err != nil {
				return nil, fmt.Errorf("wait for the bot token refresh of another replica: %w", err)
			}
			continue
		case err != nil:
			return nil, err
		}
		return s.exchangeRefreshToken(ctx, due, lease)
	}
}

// exchangeRefreshToken calls oauth.v2.access with the refresh token of inst
// (whose refresh lease this request holds) and stores the new tokens. The
// write is fenced by the refresh token: it happens only when the stored one
// is still the one exchanged and the installation was not revoked meanwhile,
// so a revoke that lands during the Slack call is never undone.
func (s *Server) exchangeRefreshToken(ctx context.Context, inst *state.Installation, lease string) (*state.Installation, error) {
	org, used := inst.OrgID, inst.BotRefreshToken
	// The old refresh token is consumed once Slack answers: store the
	// result even when the client gives up meanwhile.
	wctx := context.WithoutCancel(ctx)
	bt, rt, expires, err := s.callRefresh(ctx, org, used)
	s.auditTokenRefresh(wctx, org, err)
	if err != nil {
		s.releaseRefreshLease(wctx, org, lease)
		return nil, err
	}
	var out *state.Installation
	err = s.st.UpdateInstallation(wctx, org, func(cur *state.Installation) error {
		if cur.RefreshLease == lease {
			cur.RefreshLease, cur.RefreshLeaseUntil = "", time.Time{}
		}
		switch {
		case cur.Revoked || cur.BotToken == "":
			return errRefreshRevoked
		case cur.BotRefreshToken != used:
			return errRefreshDone
		}
		cur.BotToken = bt
		if rt != "" {
			cur.BotRefreshToken = rt
		}
		cur.BotTokenExpiresAt = expires
		cur.UpdatedAt = s.now().UTC()
		c := *cur
		out = &c
		return nil
	})
	switch {
	case errors.Is(err, errRefreshRevoked):
		s.logger(ctx).Warn("installation revoked during the bot token refresh; new token discarded")
		return nil, err
	case errors.Is(err, errRefreshDone):
		// Only after our lease lapsed: another replica stored its token.
		s.releaseRefreshLease(wctx, org, lease)
		return s.st.GetInstallation(ctx, org)
	case err != nil:
		return nil, fmt.Errorf("store refreshed bot token: %w", err)
	}
	s.logger(ctx).Info("bot token refreshed")
	return out, nil
}

// callRefresh exchanges the stored refresh token used and returns the new
// bot token and refresh token as keyring stored forms ("" when Slack sent
// no new refresh token) and the new expiry (zero when none).
func (s *Server) callRefresh(ctx context.Context, org, used string) (bt, rt string, expires time.Time, err error) {
	plain, err := s.keys.Keyring.Decrypt(used, org)
	if err != nil {
		return "", "", time.Time{}, fmt.Errorf("decrypt refresh token: %w", err)
	}
	res, err := slack.RefreshOAuthV2TokenContext(ctx, s.slackHTTP, s.cfg.SlackClientID, s.cfg.SlackClientSecret,
		string(plain), slack.OAuthOptionAPIURL(s.cfg.SlackAPIURL))
	crypto.Wipe(plain)
	if err != nil {
		return "", "", time.Time{}, err
	}
	if bt, err = s.keys.Keyring.Encrypt([]byte(res.AccessToken), org); err != nil {
		return "", "", time.Time{}, fmt.Errorf("encrypt bot token: %w", err)
	}
	if res.RefreshToken != "" {
		if rt, err = s.keys.Keyring.Encrypt([]byte(res.RefreshToken), org); err != nil {
			return "", "", time.Time{}, fmt.Errorf("encrypt refresh token: %w", err)
		}
	}
	if res.ExpiresIn > 0 {
		expires = s.now().UTC().Add(time.Duration(res.ExpiresIn) * time.Second)
	}
	return bt, rt, expires, nil
}

// releaseRefreshLease clears the refresh lease if this request still holds
// it, so a waiting replica need not wait for it to lapse.
func (s *Server) releaseRefreshLease(ctx context.Context, org, lease string) {
	err := s.st.UpdateInstallation(ctx, org, func(cur *state.Installation) error {
		if cur.RefreshLease != lease {
			return errRefreshDone
		}
		cur.RefreshLease, cur.RefreshLeaseUntil = "", time.Time{}
		return nil
	})
	if err != nil && !errors.Is(err, errRefreshDone) && !errors.Is(err, state.ErrNotFound) {
		s.logger(ctx).Error("release bot token refresh lease failed", "err", err)
	}
}

// waitCtx waits for d or until ctx ends.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

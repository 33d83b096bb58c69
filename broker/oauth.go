package broker

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// redirectURI is the OAuth redirect URI registered with Slack.
func (s *Server) redirectURI() string { return s.cfg.PublicURL + "/slack/oauth/callback" }

func (s *Server) handleInstall(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	state, err := crypto.RandomToken(32)
	if err != nil {
		s.htmlError(w, http.StatusInternalServerError, "Internal error", "Could not start the installation. Try again.")
		return
	}
	if err := s.st.PutOAuthState(ctx, s.hk.Hash(KindOAuthState, state), s.cfg.OAuthStateTTL); err != nil {
		s.logger(ctx).Error("store oauth state failed", "err", err)
		s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The broker cannot reach its store. Try again later.")
		return
	}
	u, err := url.Parse(s.cfg.SlackAuthorizeURL)
	if err != nil {
		s.htmlError(w, http.StatusInternalServerError, "Configuration error", "The Slack authorize URL is invalid.")
		return
	}
	q := u.Query()
	q.Set("client_id", s.cfg.SlackClientID)
	q.Set("scope", strings.Join(s.cfg.BotScopes, ","))
	if len(s.cfg.UserScopes) > 0 {
		q.Set("user_scope", strings.Join(s.cfg.UserScopes, ","))
	}
	q.Set("state", state)
	q.Set("redirect_uri", s.redirectURI())
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// installationFromOAuth builds the installation record from Slack's answer.
// Enterprise (org-wide) installs route by enterprise id.
func installationFromOAuth(res *slack.OAuthV2Response) (*state.Installation, error) {
	org := res.Team.ID
	if res.IsEnterpriseInstall {
		org = res.Enterprise.ID
	}
	if err := protocol.ValidateID(org); err != nil {
		return nil, err
	}
	if res.AccessToken == "" {
		return nil, errors.New("oauth.v2.access returned no bot token")
	}
	var scopes []string
	for _, sc := range strings.Split(res.Scope, ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			scopes = append(scopes, sc)
		}
	}
	return &state.Installation{
		OrgID: org, TeamID: res.Team.ID, TeamName: res.Team.Name,
		EnterpriseID: res.Enterprise.ID, EnterpriseName: res.Enterprise.Name,
		IsEnterpriseInstall: res.IsEnterpriseInstall, AppID: res.AppID, BotUserID: res.BotUserID,
		BotScopes: scopes, InstallerUserID: res.AuthedUser.ID, TokenType: res.TokenType,
	}, nil
}

func (s *Server) handleOAuthCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.m.installs.WithLabelValues("denied").Inc()
		s.htmlError(w, http.StatusBadRequest, "Installation cancelled", "Slack reported: "+e+". Start again from /slack/install.")
		return
	}
	state, code := q.Get("state"), q.Get("code")
	if state == "" || code == "" || len(state) > 256 || len(code) > 512 {
		s.m.installs.WithLabelValues("bad_request").Inc()
		s.htmlError(w, http.StatusBadRequest, "Invalid request", "The callback lacks a code or state. Start again from /slack/install.")
		return
	}
	ok, err := s.st.ConsumeOAuthState(ctx, s.hk.Hash(KindOAuthState, state))
	if err != nil {
		s.logger(ctx).Error("consume oauth state failed", "err", err)
		s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The broker cannot reach its store. Try again later.")
		return
	}
	if !ok {
		s.m.installs.WithLabelValues("bad_state").Inc()
		s.htmlError(w, http.StatusBadRequest, "Invalid or expired state", "This installation link was already used or has expired. Start again from /slack/install.")
		return
	}
	res, err := slack.GetOAuthV2ResponseContext(ctx, s.slackHTTP, s.cfg.SlackClientID, s.cfg.SlackClientSecret,
		code, s.redirectURI(), slack.OAuthOptionAPIURL(s.cfg.SlackAPIURL))
	if err != nil {
		s.m.installs.WithLabelValues("oauth_error").Inc()
		s.countSlackError("oauth.v2.access", err)
		s.logger(ctx).Warn("oauth.v2.access failed", "slack_error", slackErrorCode(err))
		s.htmlError(w, http.StatusBadGateway, "Slack refused the installation", "oauth.v2.access failed: "+slackErrorCode(err)+". Start again from /slack/install.")
		return
	}
	inst, err := installationFromOAuth(res)
	if err != nil {
		s.m.installs.WithLabelValues("oauth_error").Inc()
		s.htmlError(w, http.StatusBadGateway, "Unexpected answer from Slack", "The installation could not be stored: "+err.Error())
		return
	}
	info(ctx).org = inst.OrgID
	regToken, err := s.storeInstallation(ctx, inst, res)
	if err != nil {
		s.m.installs.WithLabelValues("error").Inc()
		s.logger(ctx).Error("store installation failed", "err", err)
		s.htmlError(w, http.StatusServiceUnavailable, "Storage unavailable", "The installation could not be stored. Try again later.")
		return
	}
	grant, err := s.putMintGrant(ctx, inst.OrgID)
	if err != nil {
		// The install and its add token stand; only the replace button is missing.
		s.logger(ctx).Warn("store mint grant failed; the page offers no replace button", "err", err)
		grant = ""
	}
	s.m.installs.WithLabelValues("ok").Inc()
	s.logger(ctx).Info("slack app installed", "enterprise_install", inst.IsEnterpriseInstall)
	s.installedPage(w, inst, regToken, grant)
}

// storeInstallation encrypts the tokens, looks up the bot id, stores the
// installation (keeping its original install time) and issues a fresh
// registration token.
func (s *Server) storeInstallation(ctx context.Context, inst *state.Installation, res *slack.OAuthV2Response) (string, error) {
	now := s.now().UTC()
	bt, err := s.keys.Keyring.Encrypt([]byte(res.AccessToken), inst.OrgID)
	if err != nil {
		return "", err
	}
	inst.BotToken = bt
	if res.RefreshToken != "" {
		rt, err := s.keys.Keyring.Encrypt([]byte(res.RefreshToken), inst.OrgID)
		if err != nil {
			return "", err
		}
		inst.BotRefreshToken = rt
		if res.ExpiresIn > 0 {
			inst.BotTokenExpiresAt = now.Add(time.Duration(res.ExpiresIn) * time.Second)
		}
	}
	// auth.test tells the bot id, which oauth.v2.access does not.
	api := slack.New(res.AccessToken, slack.OptionAPIURL(s.cfg.SlackAPIURL), slack.OptionHTTPClient(s.slackHTTP))
	if at, err := api.AuthTestContext(ctx); err == nil {
		inst.BotID = at.BotID
	} else {
		s.countSlackError("auth.test", err)
		s.logger(ctx).Warn("auth.test after install failed", "slack_error", slackErrorCode(err))
	}
	inst.UpdatedAt = now
	// A re-install replaces the record (clearing Revoked and any refresh
	// lease) but keeps the original install time, atomically.
	err = s.st.UpdateInstallation(ctx, inst.OrgID, func(old *state.Installation) error {
		inst.InstalledAt = now
		if !old.InstalledAt.IsZero() {
			inst.InstalledAt = old.InstalledAt
		}
		*old = *inst
		return nil
	})
	reinstall := err == nil
	if errors.Is(err, state.ErrNotFound) {
		inst.InstalledAt = now
		err = s.st.PutInstallation(ctx, inst)
	}
	if err != nil {
		return "", err
	}
	s.auditInstall(ctx, inst.OrgID, reinstall)
	reg, _, err := s.putRegistrationToken(ctx, inst.OrgID, state.RegistrationAdd)
	if err != nil {
		return "", err
	}
	return reg, nil
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}} · sealrelay</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
pre{background:#f4f4f4;padding:1rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}code{font-size:.95em}</style>
</head><body>
<h1>{{.Title}}</h1>
{{if .Token}}
<p>The Slack app is installed for <strong>{{.Name}}</strong> (routing id <code>{{.OrgID}}</code>).</p>
{{if .Replace}}<p><strong>Replace the current agents.</strong> Registering a bridge with this token deletes every agent registered for this workspace (their inboxes too; their next request is refused) and registers the new one in their place. It works once and expires at {{.Expires}}.</p>
{{else}}<p><strong>Add an agent.</strong> Register your bridge with this one-time registration token; agents already registered keep running. It works once and expires at {{.Expires}}.</p>
{{end}}
<pre><code>{{.Token}}</code></pre>
<p>Run this on the machine where your agent and bridge run:</p>
<pre><code>{{.Command}}</code></pre>
<p>This page is shown once; the broker stores only a hash of the token. To get a new token, install the app again from <code>/slack/install</code>.</p>
{{if .Grant}}<h2>Replace the current agents instead</h2>
<p>If an agent of this workspace is broken or lost, get a token that replaces every registered agent instead of adding one. The button works once, for {{.GrantMinutes}} minutes.</p>
<form method="post" action="{{.GrantAction}}"><input type="hidden" name="grant" value="{{.Grant}}"><button type="submit">Get a "replace the current agents" token</button></form>
{{end}}
{{else}}
<p>{{.Message}}</p>
{{end}}
</body></html>
`))

type pageData struct {
	Title, Message, Name, OrgID, Token, Command, Expires string
	// Replace marks a "replace the current agents" token.
	Replace bool
	// Grant is the one-time mint grant of the replace button (empty: no
	// button), posted to GrantAction.
	Grant, GrantAction string
	GrantMinutes       int
}

func (s *Server) writePage(w http.ResponseWriter, status int, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, d)
}

func (s *Server) htmlError(w http.ResponseWriter, status int, title, msg string) {
	s.writePage(w, status, pageData{Title: title, Message: msg})
}

// RegisterCommand returns the `bridge register` command line shown after an
// install.
func RegisterCommand(publicURL, orgID, token string) string {
	return "bridge register --broker-url " + publicURL + " --org-id " + orgID + " --registration-token " + token
}

func (s *Server) installedPage(w http.ResponseWriter, inst *state.Installation, token, grant string) {
	s.writePage(w, http.StatusOK, s.tokenPage(inst, token, s.now().Add(s.cfg.RegistrationTokenTTL), state.RegistrationAdd, grant))
}

// tokenPage is the page that shows a registration token of mode (and,
// with grant, the replace button).
func (s *Server) tokenPage(inst *state.Installation, token string, exp time.Time, mode state.RegistrationMode, grant string) pageData {
	name := inst.TeamName
	if inst.IsEnterpriseInstall {
		name = inst.EnterpriseName
	}
	if name == "" {
		name = inst.OrgID
	}
	title := "sealrelay installed"
	if mode == state.RegistrationReplace {
		title = "Replace the current agents"
	}
	return pageData{
		Title: title, Name: name, OrgID: inst.OrgID, Token: token,
		Command: RegisterCommand(s.cfg.PublicURL, inst.OrgID, token),
		Expires: exp.UTC().Format(time.RFC3339),
		Replace: mode == state.RegistrationReplace,
		Grant:   grant, GrantAction: MintReplacePath,
		GrantMinutes: int(state.DefaultMintGrantTTL / time.Minute),
	}
}

// MintReplacePath is where the install page's replace button posts.
const MintReplacePath = "/slack/install/replace-token"

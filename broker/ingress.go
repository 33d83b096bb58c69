package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// maxEventIDLength bounds event ids used as dedup keys.
const maxEventIDLength = 256

// verifySlack reads the body (capped) and checks Slack's signature and
// timestamp. Any failure is 401 except an oversized body (413).
func (s *Server) verifySlack(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	body, e := readBody(w, r)
	if e != nil {
		return nil, e
	}
	sv, err := slack.NewSecretsVerifier(r.Header, s.cfg.SlackSigningSecret)
	if err != nil {
		return nil, errf(http.StatusUnauthorized, "invalid slack signature")
	}
	if _, err := sv.Write(body); err != nil {
		return nil, errf(http.StatusUnauthorized, "invalid slack signature")
	}
	if err := sv.Ensure(); err != nil {
		return nil, errf(http.StatusUnauthorized, "invalid slack signature")
	}
	return body, nil
}

// routingIDs lists candidate installation ids for a Slack payload, best
// first: the enterprise id for org-wide installs, else the team id, then the
// other one as a fallback.
func routingIDs(teamID, enterpriseID string, enterpriseInstall bool) []string {
	var ids []string
	add := func(id string) {
		if !validID(id) {
			return
		}
		for _, x := range ids {
			if x == id {
				return
			}
		}
		ids = append(ids, id)
	}
	if enterpriseInstall {
		add(enterpriseID)
	}
	add(teamID)
	add(enterpriseID)
	return ids
}

// validID reports whether protocol.ValidateID accepts id, without its
// regular expression (routingIDs runs on every webhook).
func validID(id string) bool {
	if id == "" || len(id) > protocol.MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if i == 0 || (c != '.' && c != '_' && c != ':' && c != '-') {
			return false
		}
	}
	return true
}

// routeOrg returns the first candidate id that has an installation.
// Installation records are never deleted (uninstalling only marks them
// revoked), so ids found once are remembered for the life of the process.
func (s *Server) routeOrg(ctx context.Context, ids []string) (string, error) {
	for _, id := range ids {
		if _, ok := s.knownOrgs.Load(id); ok {
			return id, nil
		}
		_, err := s.st.GetInstallation(ctx, id)
		if err == nil {
			s.knownOrgs.Store(id, struct{}{})
			return id, nil
		}
		if !errors.Is(err, state.ErrNotFound) {
			return "", err
		}
	}
	return "", state.ErrNotFound
}

// eventsBody is the part of an Events API request the broker reads.
type eventsBody struct {
	Type                string `json:"type"`
	Challenge           string `json:"challenge"`
	TeamID              string `json:"team_id"`
	EnterpriseID        string `json:"enterprise_id"`
	IsEnterpriseInstall bool   `json:"is_enterprise_install"`
	EventID             string `json:"event_id"`
	Event               struct {
		Type   string `json:"type"`
		Tokens struct {
			Bot []string `json:"bot"`
		} `json:"tokens"`
	} `json:"event"`
	Authorizations []eventsAuth `json:"authorizations"`
}

// eventsAuth is one entry of an Events API body's authorizations.
type eventsAuth struct {
	TeamID              string `json:"team_id"`
	EnterpriseID        string `json:"enterprise_id"`
	IsEnterpriseInstall bool   `json:"is_enterprise_install"`
}

func (b *eventsBody) routing() []string {
	if len(b.Authorizations) > 0 {
		a := b.Authorizations[0]
		ids := routingIDs(a.TeamID, a.EnterpriseID, a.IsEnterpriseInstall)
		return append(ids, routingIDs(b.TeamID, b.EnterpriseID, b.IsEnterpriseInstall)...)
	}
	return routingIDs(b.TeamID, b.EnterpriseID, b.IsEnterpriseInstall)
}

func (s *Server) handleSlackEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, e := s.verifySlack(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	s.m.received.with("events").Inc()
	var ev eventsBody
	if err := decodeEventsBody(body, &ev); err != nil {
		s.fail(w, errf(http.StatusBadRequest, "%s: %s", protocol.ErrInvalidJSON, jsonErrorText(err)))
		return
	}
	switch ev.Type {
	case protocol.TypeURLVerification:
		writeJSON(w, http.StatusOK, map[string]string{"challenge": ev.Challenge})
		return
	case protocol.TypeEventCallback, protocol.TypeAppRateLimited:
	default:
		s.m.eventsDropped.WithLabelValues("unsupported").Inc()
		s.fail(w, errf(http.StatusBadRequest, "unsupported payload type"))
		return
	}
	if len(ev.EventID) > maxEventIDLength {
		s.fail(w, errf(http.StatusBadRequest, "invalid event_id"))
		return
	}
	org, err := s.routeOrg(ctx, ev.routing())
	if errors.Is(err, state.ErrNotFound) {
		s.m.eventsDropped.WithLabelValues("no_installation").Inc()
		s.logger(ctx).Info("event dropped: no installation", "type", ev.Type)
		writeOK(w)
		return
	}
	if err != nil {
		s.logger(ctx).Error("installation lookup failed", "err", err)
		s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
		return
	}
	info(ctx).org = org

	var agents []*state.Agent
	if ev.EventID != "" {
		claim, listed, err := s.st.ClaimEventAndListAgents(ctx, ev.EventID, org)
		agents = listed
		if err != nil {
			s.logger(ctx).Error("event dedup failed", "err", err)
			s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
			return
		}
		switch claim {
		case state.EventDone:
			s.m.eventsDropped.WithLabelValues("duplicate").Inc()
			writeOK(w)
			return
		case state.EventInProgress:
			s.fail(w, errf(http.StatusServiceUnavailable, "event is being stored; retry"))
			return
		}
	}
	source, typ := protocol.SourceSlack, protocol.TypeEventCallback
	switch {
	case ev.Type == protocol.TypeAppRateLimited:
		source, typ = protocol.SourceSystem, protocol.TypeAppRateLimited
		s.logger(ctx).Warn("slack reports app_rate_limited")
	case ev.Event.Type == protocol.TypeAppUninstalled || (ev.Event.Type == protocol.TypeTokensRevoked && len(ev.Event.Tokens.Bot) > 0):
		source, typ = protocol.SourceSystem, ev.Event.Type
		if err := s.st.RevokeInstallation(ctx, org, s.now()); err != nil && !errors.Is(err, state.ErrNotFound) {
			s.logger(ctx).Error("revoke installation failed", "err", err)
			s.releaseEvent(ctx, ev.EventID)
			s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
			return
		}
		s.auditRevoked(ctx, org, ev.Event.Type)
		s.logger(ctx).Warn("installation revoked by slack", "event", ev.Event.Type)
	}
	if e := s.fanOut(ctx, org, ev.EventID, source, typ, body, agents); e != nil {
		s.releaseEvent(ctx, ev.EventID)
		s.fail(w, e)
		return
	}
	if ev.EventID != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
		err := s.st.CompleteEvent(cctx, ev.EventID, s.cfg.EventDedupTTL)
		cancel()
		if err != nil {
			// Stored already; a retry may duplicate it, which at-least-once allows.
			s.logger(ctx).Warn("event dedup record failed", "err", err)
		}
	}
	writeOK(w)
}

func (s *Server) releaseEvent(ctx context.Context, id string) {
	if id == "" {
		return
	}
	// Bounded: when the store is what failed, the answer must not wait
	// for it again. An unreleased claim lapses after EventPendingTTL.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCleanupTimeout)
	defer cancel()
	if err := s.st.ReleaseEvent(cctx, id); err != nil {
		s.logger(ctx).Warn("event dedup release failed", "err", err)
	}
}

// interactionBody is the part of an interactivity payload the broker reads.
type interactionBody struct {
	Type string `json:"type"`
	Team *struct {
		ID string `json:"id"`
	} `json:"team"`
	Enterprise *struct {
		ID string `json:"id"`
	} `json:"enterprise"`
	IsEnterpriseInstall bool `json:"is_enterprise_install"`
	User                *struct {
		TeamID string `json:"team_id"`
	} `json:"user"`
}

func (s *Server) handleSlackInteractivity(w http.ResponseWriter, r *http.Request) {
	body, e := s.verifySlack(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	s.m.received.with("interactivity").Inc()
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("payload") == "" {
		s.fail(w, errf(http.StatusBadRequest, "invalid interactivity request: want form field payload"))
		return
	}
	payload := []byte(form.Get("payload"))
	var ib interactionBody
	if err := json.Unmarshal(payload, &ib); err != nil {
		s.fail(w, errf(http.StatusBadRequest, "%s: %s", protocol.ErrInvalidJSON, jsonErrorText(err)))
		return
	}
	if ib.Type == "" || len(ib.Type) > 64 {
		s.fail(w, errf(http.StatusBadRequest, "invalid interactivity payload: missing type"))
		return
	}
	var team, ent string
	if ib.Team != nil {
		team = ib.Team.ID
	}
	if team == "" && ib.User != nil {
		team = ib.User.TeamID
	}
	if ib.Enterprise != nil {
		ent = ib.Enterprise.ID
	}
	s.ingest(w, r, routingIDs(team, ent, ib.IsEnterpriseInstall), ib.Type, payload)
	crypto.Wipe(payload)
}

func (s *Server) handleSlackCommands(w http.ResponseWriter, r *http.Request) {
	body, e := s.verifySlack(w, r)
	if e != nil {
		s.fail(w, e)
		return
	}
	s.m.received.with("commands").Inc()
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("command") == "" {
		s.fail(w, errf(http.StatusBadRequest, "invalid slash command request"))
		return
	}
	fields := make(map[string]string, len(form))
	for k, v := range form {
		if len(v) > 0 {
			fields[k] = v[0]
		}
	}
	payload, err := json.Marshal(fields)
	if err != nil {
		s.fail(w, errf(http.StatusBadRequest, "invalid slash command request"))
		return
	}
	s.ingest(w, r, routingIDs(form.Get("team_id"), form.Get("enterprise_id"), form.Get("is_enterprise_install") == "true"),
		protocol.TypeSlashCommand, payload)
	crypto.Wipe(payload)
}

// ingest routes and fans out an interactivity or command payload. Success is
// an empty 200: Slack reads a JSON body on these endpoints as a response
// (a message to post for a slash command, a response_action for a modal
// submission), so {"ok":true} would show up in Slack or fail the modal.
// Errors keep the usual {"ok":false,"error"} form.
//
// When an active agent of the org declared inbox.respond and Slack reads the
// response body of typ, the request is held instead (protocol §8.2, held.go).
func (s *Server) ingest(w http.ResponseWriter, r *http.Request, ids []string, typ string, payload []byte) {
	arrived := time.Now()
	ctx := r.Context()
	org, err := s.routeOrg(ctx, ids)
	if errors.Is(err, state.ErrNotFound) {
		s.m.eventsDropped.WithLabelValues("no_installation").Inc()
		s.logger(ctx).Info("event dropped: no installation", "type", typ)
		w.WriteHeader(http.StatusOK)
		return
	}
	if err != nil {
		s.logger(ctx).Error("installation lookup failed", "err", err)
		s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
		return
	}
	info(ctx).org = org
	var agents []*state.Agent
	if holdsResponse(typ) {
		// Listed here rather than in fanOut, so deciding whether to hold
		// costs no extra round trip.
		if agents, err = s.st.ListAgents(ctx, org); err != nil {
			s.logger(ctx).Error("list agents failed", "err", err)
			s.fail(w, errf(http.StatusServiceUnavailable, "state store unavailable"))
			return
		}
		if s.respondCapable(agents) {
			s.holdRequest(w, r, arrived, org, typ, payload, agents)
			return
		}
	}
	if e := s.fanOut(ctx, org, "", protocol.SourceSlack, typ, payload, agents); e != nil {
		s.fail(w, e)
		return
	}
	w.WriteHeader(http.StatusOK)
}

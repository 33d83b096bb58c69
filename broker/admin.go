package broker

import (
	"context"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/sealrelay/sealrelay/queue"
)

// Admin defaults.
const (
	// DefaultAgentIdleAfter is how long without a pull makes an agent idle.
	DefaultAgentIdleAfter = 24 * time.Hour
	// PullRecordInterval is the most often the broker writes one agent's
	// last pull time (per process): a pull within this interval of the
	// last recorded one is not written again.
	PullRecordInterval = 30 * time.Second
	// DefaultDeadLetterListLimit is how many dead letters Admin.DeadLetters
	// lists when asked for 0; MaxDeadLetterListLimit is the most it lists.
	DefaultDeadLetterListLimit = 100
	MaxDeadLetterListLimit     = 1000
	// MaxRedriveIDs bounds the ids of one Admin.Redrive.
	MaxRedriveIDs = 1000
	// CapabilityRespond is the declared capability shown for an agent whose
	// inbox.respond declaration (protocol §8.2) is live.
	CapabilityRespond = "inbox.respond"
)

// ErrInvalidAdminArgument wraps an admin request argument that is
// malformed (an agent id or message id that cannot exist, a limit out of
// range); the text names the argument.
var ErrInvalidAdminArgument = errors.New("invalid argument")

// AuditRow is one audit record as the admin page shows it: display text
// only, never arguments or message text.
type AuditRow struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	OrgID   string    `json:"org_id,omitempty"`
	AgentID string    `json:"agent_id,omitempty"`
	Summary string    `json:"summary,omitempty"`
}

// AdminOptions configure an Admin.
type AdminOptions struct {
	// IdleAfter is how long without a pull makes an agent idle (default
	// DefaultAgentIdleAfter).
	IdleAfter time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnRevoke, when set, is called after an agent was revoked (the
	// running Server forgets its per-agent caches).
	OnRevoke func(a *state.Agent)
	// PauseIdleFanout says fan-out skips idle agents (Config.PauseIdleFanout):
	// idle agents are shown as "idle (fan-out paused)".
	PauseIdleFanout bool
	// MintToken mints a registration token (Server.MintRegistrationToken);
	// nil: Admin.MintToken answers ErrMintUnavailable (the token hash key
	// is the running broker's).
	MintToken func(ctx context.Context, org string, mode state.RegistrationMode) (string, time.Time, error)
}

// Admin is the operator's view of the broker's store: installations,
// agents with their inbox counters, revocation, dead letters. It needs
// no running Server, so that the CLI can use it on the Redis store
// directly; a Server hands out one wired to its caches (Server.Admin).
type Admin struct {
	st   state.Store
	as   state.Admin
	q    queue.Store
	dla  queue.DeadLetterAdmin
	opts AdminOptions
	dl   *deadLetterGauge
}

// NewAdmin returns an Admin on st and q. q must also implement
// queue.DeadLetterAdmin (both engines' inboxes do).
func NewAdmin(st state.Store, q queue.Store, opts AdminOptions) (*Admin, error) {
	if st == nil || q == nil {
		return nil, errors.New("broker admin: NewAdmin needs a state.Store and a queue.Store")
	}
	dla, ok := q.(queue.DeadLetterAdmin)
	if !ok {
		return nil, fmt.Errorf("broker admin: inbox store %T has no dead-letter administration", q)
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = DefaultAgentIdleAfter
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Admin{st: st, as: st, q: q, dla: dla, opts: opts}
	a.dl = newDeadLetterGauge(a)
	return a, nil
}

// IdleAfter returns the idle threshold in use.
func (a *Admin) IdleAfter() time.Duration { return a.opts.IdleAfter }

// InstallationView is an installation as the admin API shows it (never
// its tokens).
type InstallationView struct {
	OrgID               string    `json:"org_id"`
	TeamID              string    `json:"team_id,omitempty"`
	TeamName            string    `json:"team_name,omitempty"`
	EnterpriseID        string    `json:"enterprise_id,omitempty"`
	EnterpriseName      string    `json:"enterprise_name,omitempty"`
	IsEnterpriseInstall bool      `json:"is_enterprise_install,omitempty"`
	BotUserID           string    `json:"bot_user_id,omitempty"`
	InstalledAt         time.Time `json:"installed_at"`
	UpdatedAt           time.Time `json:"updated_at"`
	BotTokenExpiresAt   time.Time `json:"bot_token_expires_at,omitzero"`
	Revoked             bool      `json:"revoked"`
	RevokedAt           time.Time `json:"revoked_at,omitzero"`
	Agents              int       `json:"agents"`
}

// AgentView is an agent as the admin API shows it.
type AgentView struct {
	ID           string    `json:"id"`
	OrgID        string    `json:"org_id"`
	RegisteredAt time.Time `json:"registered_at"`
	// LastPull is zero when no pull was recorded.
	LastPull       time.Time `json:"last_pull,omitzero"`
	Ready          int       `json:"ready"`
	Leased         int       `json:"leased"`
	DeadLetters    int       `json:"dead_letters"`
	TokenExpiresAt time.Time `json:"token_expires_at"`
	TokenExpired   bool      `json:"token_expired"`
	Capabilities   []string  `json:"capabilities"`
	// Idle: no pull recorded for IdleAfter (counted from registration
	// when it never pulled).
	Idle bool `json:"idle"`
	// FanoutPaused: the agent is idle and the broker pauses fan-out to
	// idle agents (--pause-idle-fanout); its copies are counted as
	// dropped (agent_idle) until it pulls again.
	FanoutPaused bool `json:"fanout_paused"`
}

// DeadLetterView describes one dead letter without its body.
type DeadLetterView struct {
	ID         string    `json:"id"`
	Deliveries int       `json:"deliveries"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	AgeSeconds int64     `json:"age_seconds"`
	Size       int       `json:"size"`
}

var adminAgentIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// ValidateAgentID reports whether id can name an agent.
func ValidateAgentID(id string) error {
	if !adminAgentIDPattern.MatchString(id) {
		return fmt.Errorf("%w: agent id: want letters, digits and . _ : - (such as ag-0123abcd…), at most 128", ErrInvalidAdminArgument)
	}
	return nil
}

// Installations lists every installation with its agent count.
func (a *Admin) Installations(ctx context.Context) ([]InstallationView, error) {
	insts, err := a.as.ListInstallations(ctx)
	if err != nil {
		return nil, fmt.Errorf("list installations: %w", err)
	}
	agents, err := a.as.ListAllAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	count := map[string]int{}
	for _, ag := range agents {
		count[ag.OrgID]++
	}
	out := make([]InstallationView, 0, len(insts))
	for _, in := range insts {
		out = append(out, InstallationView{
			OrgID: in.OrgID, TeamID: in.TeamID, TeamName: in.TeamName, EnterpriseID: in.EnterpriseID,
			EnterpriseName: in.EnterpriseName, IsEnterpriseInstall: in.IsEnterpriseInstall, BotUserID: in.BotUserID,
			InstalledAt: in.InstalledAt, UpdatedAt: in.UpdatedAt, BotTokenExpiresAt: in.BotTokenExpiresAt,
			Revoked: in.Revoked, RevokedAt: in.RevokedAt, Agents: count[in.OrgID],
		})
	}
	return out, nil
}

// Agents lists the agents of org (every org when org is empty), ordered by
// org then id, with last pull, inbox counters and idle flag.
func (a *Admin) Agents(ctx context.Context, org string) ([]AgentView, error) {
	var agents []*state.Agent
	var err error
	if org == "" {
		agents, err = a.as.ListAllAgents(ctx)
	} else {
		agents, err = a.st.ListAgents(ctx, org)
	}
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	ids := make([]string, len(agents))
	for i, ag := range agents {
		ids[i] = ag.ID
	}
	pulls, err := a.as.LastPulls(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("read last pulls: %w", err)
	}
	now := a.opts.Now()
	out := make([]AgentView, 0, len(agents))
	for _, ag := range agents {
		v, err := a.view(ctx, ag, pulls[ag.ID], now)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].OrgID != out[j].OrgID {
			return out[i].OrgID < out[j].OrgID
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Agent returns one agent's view; the error wraps state.ErrNotFound when the
// agent is unknown.
func (a *Admin) Agent(ctx context.Context, id string) (AgentView, error) {
	ag, err := a.agent(ctx, id)
	if err != nil {
		return AgentView{}, err
	}
	pulls, err := a.as.LastPulls(ctx, []string{id})
	if err != nil {
		return AgentView{}, fmt.Errorf("read last pull of %s: %w", id, err)
	}
	return a.view(ctx, ag, pulls[id], a.opts.Now())
}

func (a *Admin) agent(ctx context.Context, id string) (*state.Agent, error) {
	if err := ValidateAgentID(id); err != nil {
		return nil, err
	}
	ag, err := a.st.GetAgent(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("agent %s: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get agent %s: %w", id, err)
	}
	return ag, nil
}

func (a *Admin) view(ctx context.Context, ag *state.Agent, lastPull, now time.Time) (AgentView, error) {
	st, err := a.q.Stats(ctx, ag.ID)
	if err != nil {
		return AgentView{}, fmt.Errorf("inbox stats of %s: %w", ag.ID, err)
	}
	a.dl.set(ag.ID, st.DeadLetters)
	v := AgentView{
		ID: ag.ID, OrgID: ag.OrgID, RegisteredAt: ag.CreatedAt, LastPull: lastPull,
		Ready: st.Ready, Leased: st.Leased, DeadLetters: st.DeadLetters,
		TokenExpiresAt: ag.AccessTokenExpiresAt, TokenExpired: !now.Before(ag.AccessTokenExpiresAt),
		Capabilities: []string{},
	}
	if ag.RespondUntil.After(now) {
		v.Capabilities = append(v.Capabilities, CapabilityRespond)
	}
	v.Idle = agentIdle(ag.CreatedAt, lastPull, now, a.opts.IdleAfter)
	v.FanoutPaused = v.Idle && a.opts.PauseIdleFanout
	return v, nil
}

// RevokeResult is what Revoke did.
type RevokeResult struct {
	AgentID string `json:"agent_id"`
	OrgID   string `json:"org_id"`
	// Dropped is how many unacknowledged messages and dead letters the
	// deleted inbox held.
	Dropped int `json:"dropped"`
}

// Revoke deletes the agent, its access token (its next request is
// answered 401) and its inbox. The error wraps state.ErrNotFound when the agent
// is unknown.
func (a *Admin) Revoke(ctx context.Context, id string) (RevokeResult, error) {
	ag, err := a.agent(ctx, id)
	if err != nil {
		return RevokeResult{}, err
	}
	res := RevokeResult{AgentID: ag.ID, OrgID: ag.OrgID}
	if st, err := a.q.Stats(ctx, id); err == nil {
		res.Dropped = st.Depth() + st.DeadLetters
	}
	if err := a.st.DeleteAgent(ctx, id); err != nil {
		if errors.Is(err, state.ErrNotFound) { // revoked meanwhile
			return RevokeResult{}, fmt.Errorf("agent %s: %w", id, state.ErrNotFound)
		}
		return RevokeResult{}, fmt.Errorf("revoke agent %s: %w", id, err)
	}
	if a.opts.OnRevoke != nil {
		a.opts.OnRevoke(ag)
	}
	// The token is gone: the agent is revoked. What follows is cleanup
	// that retention would also do.
	var errs []error
	if err := a.q.DeleteInbox(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("delete inbox of revoked agent %s: %w", id, err))
	}
	if err := a.as.ForgetPull(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("forget last pull of revoked agent %s: %w", id, err))
	}
	a.dl.forget(id)
	return res, errors.Join(errs...)
}

// DeadLetters lists up to limit (0 = DefaultDeadLetterListLimit, at most
// MaxDeadLetterListLimit) dead letters of the agent's inbox, oldest first,
// without their bodies.
func (a *Admin) DeadLetters(ctx context.Context, agentID string, limit int) ([]DeadLetterView, error) {
	if limit < 0 || limit > MaxDeadLetterListLimit {
		return nil, fmt.Errorf("%w: limit: want 0 to %d", ErrInvalidAdminArgument, MaxDeadLetterListLimit)
	}
	if limit == 0 {
		limit = DefaultDeadLetterListLimit
	}
	if _, err := a.agent(ctx, agentID); err != nil {
		return nil, err
	}
	msgs, err := a.dla.DeadLetters(ctx, agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters of %s: %w", agentID, err)
	}
	now := a.opts.Now()
	out := make([]DeadLetterView, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, DeadLetterView{ID: m.ID, Deliveries: m.Deliveries, EnqueuedAt: m.EnqueuedAt,
			AgeSeconds: int64(now.Sub(m.EnqueuedAt) / time.Second), Size: len(m.Body)})
	}
	a.refreshDeadLetters(ctx, agentID)
	return out, nil
}

// Redrive moves the named dead letters (all when ids is empty) of the
// agent's inbox back to its ready list and returns how many moved.
func (a *Admin) Redrive(ctx context.Context, agentID string, ids []string) (int, error) {
	if len(ids) > MaxRedriveIDs {
		return 0, fmt.Errorf("%w: ids: at most %d per redrive", ErrInvalidAdminArgument, MaxRedriveIDs)
	}
	for _, id := range ids {
		if queue.ValidateID(id) != nil {
			return 0, fmt.Errorf("%w: message id %q: want letters, digits, _ and -", ErrInvalidAdminArgument, truncateForError(id))
		}
	}
	if _, err := a.agent(ctx, agentID); err != nil {
		return 0, err
	}
	n, err := a.dla.Redrive(ctx, agentID, ids)
	if err != nil {
		return 0, fmt.Errorf("redrive dead letters of %s: %w", agentID, err)
	}
	a.refreshDeadLetters(ctx, agentID)
	return n, nil
}

// Purge deletes every dead letter of the agent's inbox and returns how
// many it deleted.
func (a *Admin) Purge(ctx context.Context, agentID string) (int, error) {
	if _, err := a.agent(ctx, agentID); err != nil {
		return 0, err
	}
	n, err := a.dla.PurgeDeadLetters(ctx, agentID)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of %s: %w", agentID, err)
	}
	a.refreshDeadLetters(ctx, agentID)
	return n, nil
}

func (a *Admin) refreshDeadLetters(ctx context.Context, agentID string) {
	if st, err := a.q.Stats(ctx, agentID); err == nil {
		a.dl.set(agentID, st.DeadLetters)
	}
}

func truncateForError(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// pullMarks remembers, per process, when each agent's last pull was
// written, so that RecordPull runs at most once per PullRecordInterval per
// agent.
type pullMarks struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const maxPullMarks = 100_000

// due reports whether a pull of id at now should be written, and if so
// marks it written.
func (p *pullMarks) due(id string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.m[id]; ok && now.Sub(last) < PullRecordInterval && !now.Before(last) {
		return false
	}
	if p.m == nil || len(p.m) >= maxPullMarks {
		p.m = make(map[string]time.Time)
	}
	p.m[id] = now
	return true
}

// undo forgets the mark of id (the write failed, or the agent is gone).
func (p *pullMarks) undo(id string) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

// ErrMintUnavailable is Admin.MintToken's answer when the Admin was built
// without a running broker (NewAdmin on the Redis store from the CLI):
// only the broker holds the key that hashes registration tokens.
var ErrMintUnavailable = errors.New("minting registration tokens needs the running broker's admin listener")

// MintedToken is a registration token Admin.MintToken issued; the token
// is shown once and stored only as a keyed hash.
type MintedToken struct {
	OrgID     string    `json:"org_id"`
	Mode      string    `json:"mode"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MintToken issues a registration token of mode for org (see
// Server.MintRegistrationToken).
func (a *Admin) MintToken(ctx context.Context, org string, mode state.RegistrationMode) (MintedToken, error) {
	if a.opts.MintToken == nil {
		return MintedToken{}, ErrMintUnavailable
	}
	tok, exp, err := a.opts.MintToken(ctx, org, mode)
	if err != nil {
		return MintedToken{}, err
	}
	return MintedToken{OrgID: org, Mode: string(mode), Token: tok, ExpiresAt: exp}, nil
}

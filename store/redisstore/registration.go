package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/state"
)

var _ state.Registration = (*State)(nil)

// PutRegistrationToken implements state.OneTime: a token of mode add.
func (s *State) PutRegistrationToken(ctx context.Context, h state.TokenHash, orgID string, expiresAt time.Time) error {
	return s.PutRegistrationTokenMode(ctx, h, orgID, state.RegistrationAdd, expiresAt)
}

// PutRegistrationTokenMode implements state.Registration.
func (s *State) PutRegistrationTokenMode(ctx context.Context, h state.TokenHash, orgID string, mode state.RegistrationMode, expiresAt time.Time) error {
	if _, err := state.ParseRegistrationMode(string(mode)); err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	k := s.k.regToken(h.String())
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "org", orgID, "exp", strconv.FormatInt(expiresAt.UnixMilli(), 10), "used", "0", "mode", string(mode))
		p.PExpireAt(ctx, k, expiresAt.Add(state.UsedRegistrationTokenRetention))
		return nil
	})
	if err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	return nil
}

// registerScript consumes a registration token and creates an agent; with
// a replace token it first deletes the org's other agents, which the
// caller read beforehand and passes in (so every key the script touches is
// declared): the script answers 'changed' when the org's agents are not
// exactly that snapshot, and the caller retries with a fresh one.
//
// KEYS: token, new agentkey, new agent, agents of org, new atok, then per
// snapshot agent: agent, atok, agentkey. ARGV: org, now (ms), new id, new
// record, new expiry (ms), max per org, n, then per snapshot agent: id,
// record.
var registerScript = redis.NewScript(`
local t = redis.call('HMGET', KEYS[1], 'org', 'exp', 'used', 'mode')
if not t[1] or t[1] ~= ARGV[1] then return {'notfound'} end
if t[3] == '1' then return {'used'} end
if tonumber(t[2]) <= tonumber(ARGV[2]) then return {'expired'} end
local replace = t[4] == 'replace'
local mode = 'add'
if replace then mode = 'replace' end
local n = tonumber(ARGV[7])
local gone = {}
if replace then
  if redis.call('HLEN', KEYS[4]) ~= n then return {'changed'} end
  for i = 1, n do
    local id = ARGV[6 + 2*i]
    if redis.call('HGET', KEYS[4], id) ~= ARGV[7 + 2*i] then return {'changed'} end
    gone[id] = true
  end
end
local owner = redis.call('GET', KEYS[2])
if owner and not gone[owner] then return {'exists'} end
local max = tonumber(ARGV[6])
if not replace and max > 0 and redis.call('HLEN', KEYS[4]) >= max then return {'full'} end
if replace then
  for i = 1, n do
    local id = ARGV[6 + 2*i]
    local b = 5 + 3*(i-1)
    redis.call('DEL', KEYS[b+1], KEYS[b+2])
    if redis.call('GET', KEYS[b+3]) == id then redis.call('DEL', KEYS[b+3]) end
    redis.call('HDEL', KEYS[4], id)
  end
end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], 'agent', ARGV[3], 'org', ARGV[1], 'exp', ARGV[5])
redis.call('PEXPIREAT', KEYS[5], ARGV[5])
return {'ok', mode}
`)

// registerAttempts bounds the retries of Register when the org's agents
// change between its snapshot and its script.
const registerAttempts = 10

// Register implements state.Registration: one script consumes the token,
// deletes the replaced agents (replace mode) and creates a, so replicas
// can neither overshoot the per-org limit nor interleave an add with a
// replace.
func (s *State) Register(ctx context.Context, h state.TokenHash, a *state.Agent, now time.Time, maxPerOrg int) (state.RegisterResult, error) {
	rec, err := encodeAgent(a)
	if err != nil {
		return state.RegisterResult{}, err
	}
	// The first attempt passes no snapshot: an add token (the common case)
	// needs none, and costs one round trip as before. A replace token then
	// answers 'changed' unless the org has no agents, and the next attempts
	// carry the snapshot.
	withSnapshot := false
	for range registerAttempts {
		snap := map[string]string{}
		if withSnapshot {
			var err error
			if snap, err = s.rdb.HGetAll(ctx, s.k.orgAgents(a.OrgID)).Result(); err != nil {
				return state.RegisterResult{}, fmt.Errorf("register agent: read agents of %s: %w", a.OrgID, err)
			}
		}
		ids := make([]string, 0, len(snap))
		for id := range snap {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		keys := []string{
			s.k.regToken(h.String()),
			s.k.agentKey(hex.EncodeToString(a.SigningPublicKey[:])),
			s.k.agent(a.ID),
			s.k.orgAgents(a.OrgID),
			s.k.accessToken(a.AccessTokenHash.String()),
		}
		args := []any{a.OrgID, now.UnixMilli(), a.ID, rec, a.AccessTokenExpiresAt.UnixMilli(), maxPerOrg, len(ids)}
		old := make([]*state.Agent, 0, len(ids))
		for _, id := range ids {
			o, err := s.agentFromRecord(snap[id])
			if err != nil {
				return state.RegisterResult{}, fmt.Errorf("register agent: decode agent %s: %w", id, err)
			}
			old = append(old, o)
			keys = append(keys, s.k.agent(id), s.k.accessToken(o.AccessTokenHash.String()),
				s.k.agentKey(hex.EncodeToString(o.SigningPublicKey[:])))
			args = append(args, id, snap[id])
		}
		res, err := registerScript.Run(ctx, s.rdb, keys, args...).StringSlice()
		if err != nil {
			return state.RegisterResult{}, fmt.Errorf("register agent: %w", err)
		}
		if len(res) == 0 {
			return state.RegisterResult{}, errors.New("register agent: empty script result")
		}
		switch res[0] {
		case "ok":
			if len(res) > 1 && res[1] == string(state.RegistrationReplace) {
				return state.RegisterResult{Mode: state.RegistrationReplace, Replaced: old}, nil
			}
			return state.RegisterResult{Mode: state.RegistrationAdd, Replaced: []*state.Agent{}}, nil
		case "changed":
			withSnapshot = true
			continue
		case "notfound":
			return state.RegisterResult{}, state.ErrNotFound
		case "used":
			return state.RegisterResult{}, state.ErrUsed
		case "expired":
			return state.RegisterResult{}, state.ErrExpired
		case "exists":
			return state.RegisterResult{}, state.ErrAgentExists
		case "full":
			return state.RegisterResult{}, state.ErrOrgFull
		}
		return state.RegisterResult{}, fmt.Errorf("register agent: unexpected script result %q", res[0])
	}
	return state.RegisterResult{}, fmt.Errorf("register agent in %s: the org's agents kept changing: %w", a.OrgID, state.ErrConflict)
}

// PutMintGrant implements state.Registration.
func (s *State) PutMintGrant(ctx context.Context, h state.TokenHash, orgID string, expiresAt time.Time) error {
	v := strconv.FormatInt(expiresAt.UnixMilli(), 10) + " " + orgID
	if err := s.rdb.SetArgs(ctx, s.k.mintGrant(h.String()), v, redis.SetArgs{ExpireAt: expiresAt}).Err(); err != nil {
		return fmt.Errorf("put mint grant: %w", err)
	}
	return nil
}

// ConsumeMintGrant implements state.Registration with GETDEL.
func (s *State) ConsumeMintGrant(ctx context.Context, h state.TokenHash, now time.Time) (string, error) {
	v, err := s.rdb.GetDel(ctx, s.k.mintGrant(h.String())).Result()
	if errors.Is(err, redis.Nil) {
		return "", state.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("consume mint grant: %w", err)
	}
	expS, org, ok := strings.Cut(v, " ")
	exp, perr := strconv.ParseInt(expS, 10, 64)
	if !ok || perr != nil || org == "" {
		return "", errors.New("consume mint grant: malformed record")
	}
	if exp <= now.UnixMilli() {
		return "", state.ErrExpired
	}
	return org, nil
}

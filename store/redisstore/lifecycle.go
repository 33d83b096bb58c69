package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
)

var _ state.Lifecycle = (*State)(nil)

// renewScript swaps an agent's access token. KEYS: agent, agents of org,
// old atok, new atok. ARGV: expected record, new record, agent id, org,
// new expiry (Unix ms), overlap end of the old token (Unix ms).
var renewScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 'notfound' end
if v ~= ARGV[1] then return 'changed' end
local exp = redis.call('HGET', KEYS[3], 'exp')
if exp and tonumber(exp) > tonumber(ARGV[6]) then
  redis.call('HSET', KEYS[3], 'exp', ARGV[6])
  redis.call('PEXPIREAT', KEYS[3], ARGV[6])
end
redis.call('HSET', KEYS[4], 'agent', ARGV[3], 'org', ARGV[4], 'exp', ARGV[5])
redis.call('PEXPIREAT', KEYS[4], ARGV[5])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return 'ok'
`)

// rekeyScript replaces an agent's keys. KEYS: agent, agents of org, old
// agentkey, new agentkey. ARGV: expected record, new record, agent id.
var rekeyScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 'notfound' end
if v ~= ARGV[1] then return 'changed' end
if KEYS[3] ~= KEYS[4] then
  local owner = redis.call('GET', KEYS[4])
  if owner and owner ~= ARGV[3] then return 'exists' end
  if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
  redis.call('SET', KEYS[4], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return 'ok'
`)

// updateAgentRecord reads agent id, lets edit change it and runs script
// with the compare-and-swap arguments (expected record, new record, id,
// then extra's), retrying a few times when another writer changed the
// record meanwhile. keys and extra are computed from the old and new record.
func (s *State) updateAgentRecord(ctx context.Context, op, id string, edit func(*state.Agent), script *redis.Script,
	keys func(old, updated *state.Agent) []string, extra func(old *state.Agent) []any) error {
	for range 5 {
		old, err := s.rdb.Get(ctx, s.k.agent(id)).Result()
		if errors.Is(err, redis.Nil) {
			return state.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		a, err := decodeAgent([]byte(old))
		if err != nil {
			return err
		}
		before := *a
		edit(a)
		rec, err := encodeAgent(a)
		if err != nil {
			return err
		}
		args := []any{old, string(rec), id}
		if extra != nil {
			args = append(args, extra(&before)...)
		}
		res, err := script.Run(ctx, s.rdb, keys(&before, a), args...).Text()
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		switch res {
		case "ok":
			return nil
		case "notfound":
			return state.ErrNotFound
		case "exists":
			return state.ErrAgentExists
		case "changed":
			continue
		}
		return fmt.Errorf("%s: unexpected script result %q", op, res)
	}
	return fmt.Errorf("%s of %s: record kept changing: %w", op, id, state.ErrConflict)
}

// RenewAccessToken implements state.Lifecycle in one script.
func (s *State) RenewAccessToken(ctx context.Context, agentID string, newHash state.TokenHash, newExpiry, oldOverlapUntil time.Time) error {
	return s.updateAgentRecord(ctx, "renew access token", agentID, func(a *state.Agent) {
		a.AccessTokenHash = newHash
		a.AccessTokenExpiresAt = newExpiry.UTC()
	}, renewScript, func(old, updated *state.Agent) []string {
		return []string{s.k.agent(agentID), s.k.orgAgents(old.OrgID),
			s.k.accessToken(old.AccessTokenHash.String()), s.k.accessToken(updated.AccessTokenHash.String())}
	}, func(old *state.Agent) []any {
		return []any{old.OrgID, newExpiry.UnixMilli(), oldOverlapUntil.UnixMilli()}
	})
}

// RekeyAgent implements state.Lifecycle in one script.
func (s *State) RekeyAgent(ctx context.Context, agentID string, newBox crypto.BoxPublicKey, newSigning crypto.SigningPublicKey) error {
	return s.updateAgentRecord(ctx, "rekey agent", agentID, func(a *state.Agent) {
		a.BoxPublicKey, a.SigningPublicKey = newBox, newSigning
	}, rekeyScript, func(old, updated *state.Agent) []string {
		return []string{s.k.agent(agentID), s.k.orgAgents(old.OrgID),
			s.k.agentKey(hex.EncodeToString(old.SigningPublicKey[:])),
			s.k.agentKey(hex.EncodeToString(updated.SigningPublicKey[:]))}
	}, nil)
}

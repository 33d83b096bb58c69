package redisstore

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/internal/boundedcache"
	"github.com/sealrelay/sealrelay/state"
)

// State implements state.Store on Redis (go-redis v9), for any number of
// broker replicas sharing one Redis or Redis Cluster. Its keys (keys.go)
// all carry the hash tag {state}, so they live in one Cluster slot and the
// multi-key scripts below work on Cluster too.
//
// Races are closed with Lua scripts (registration, buckets), SET NX GET
// (event claims), SET NX (nonces, signatures), GETDEL (OAuth state) and
// WATCH transactions (installation updates).
//
// The per-event calls (ClaimEvent, ClaimEventAndListAgents, CompleteEvent,
// ReleaseEvent) and the replay records (UseNonce, UseSignature) of
// concurrent callers share round trips: see coalescer (coalesce.go).
type State struct {
	rdb redis.UniversalClient
	k   stateKeys
	co  *coalescer

	// decoded caches parsed agent records by their stored JSON (a record's
	// bytes identify its content), saving a JSON and key decode per agent
	// on every fan-out; an internal/boundedcache of maxDecodedAgents.
	decoded *boundedcache.Cache[string, *state.Agent]

	// tokenAgents maps access token hashes to the agent id their record
	// names (see LookupAgentByAccessToken): a hint of which agent record
	// to read with the token, never an answer; an internal/boundedcache of
	// maxTokenAgents.
	tokenAgents *boundedcache.Cache[state.TokenHash, string]

	// clockOffset (ms) is added to the server's clock by the rate-limit
	// script; only tests move it (export_test.go).
	clockOffset atomic.Int64
}

const maxDecodedAgents = 10000

// agentFromRecord decodes rec, using the cache. It returns a copy.
func (s *State) agentFromRecord(rec string) (*state.Agent, error) {
	a, ok := s.decoded.Get(rec)
	if !ok {
		var err error
		if a, err = decodeAgent([]byte(rec)); err != nil {
			return nil, err
		}
		s.decoded.Put(rec, a)
	}
	c := *a
	return &c, nil
}

var _ state.Store = (*State)(nil)

// NewState returns a State on rdb whose keys all start with prefix
// (for example "sealrelay:"). The caller owns rdb; Close does not close it.
func NewState(rdb redis.UniversalClient, prefix string) *State {
	return &State{rdb: rdb, k: newStateKeys(prefix), co: newCoalescer(rdb),
		decoded:     boundedcache.New(boundedcache.Options[string, *state.Agent]{Max: maxDecodedAgents}),
		tokenAgents: boundedcache.New(boundedcache.Options[state.TokenHash, string]{Max: maxTokenAgents})}
}

// Ping implements state.Store.
func (s *State) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis state ping: %w", err)
	}
	return nil
}

// Close implements state.Store. It fails the per-event calls still queued
// for a round trip and waits for those on the wire; afterwards those calls
// (see State) fail with ErrClosed. The Redis client belongs to the caller
// and stays open, so the other calls keep working.
func (s *State) Close() error {
	s.co.close()
	return nil
}

// PutInstallation implements state.Store.
func (s *State) PutInstallation(ctx context.Context, inst *state.Installation) error {
	b, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("encode installation: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.k.inst(inst.OrgID), b, 0)
		p.SAdd(ctx, s.k.insts(), inst.OrgID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("put installation: %w", err)
	}
	return nil
}

// GetInstallation implements state.Store.
func (s *State) GetInstallation(ctx context.Context, orgID string) (*state.Installation, error) {
	b, err := s.rdb.Get(ctx, s.k.inst(orgID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, state.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get installation: %w", err)
	}
	var inst state.Installation
	if err := json.Unmarshal(b, &inst); err != nil {
		return nil, fmt.Errorf("decode installation: %w", err)
	}
	return &inst, nil
}

// updateInstallation applies fn to the installation under WATCH, retrying on
// concurrent modification. fn returns false to skip the write.
func (s *State) updateInstallation(ctx context.Context, orgID string, fn func(*state.Installation) (bool, error)) error {
	k := s.k.inst(orgID)
	for attempt := 0; attempt < 10; attempt++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, k).Bytes()
			if errors.Is(err, redis.Nil) {
				return state.ErrNotFound
			}
			if err != nil {
				return err
			}
			var inst state.Installation
			if err := json.Unmarshal(b, &inst); err != nil {
				return fmt.Errorf("decode installation: %w", err)
			}
			write, err := fn(&inst)
			if err != nil || !write {
				return err
			}
			nb, err := json.Marshal(&inst)
			if err != nil {
				return fmt.Errorf("encode installation: %w", err)
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, k, nb, 0)
				return nil
			})
			return err
		}, k)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("update installation: %w", err)
		}
		return nil
	}
	return fmt.Errorf("update installation: %w", state.ErrConflict)
}

// UpdateInstallation implements state.Store.
func (s *State) UpdateInstallation(ctx context.Context, orgID string, fn func(*state.Installation) error) error {
	var fnErr error
	err := s.updateInstallation(ctx, orgID, func(inst *state.Installation) (bool, error) {
		fnErr = fn(inst)
		return fnErr == nil, nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// RevokeInstallation implements state.Store.
func (s *State) RevokeInstallation(ctx context.Context, orgID string, at time.Time) error {
	return s.UpdateInstallation(ctx, orgID, func(inst *state.Installation) error {
		inst.Revoke(at)
		return nil
	})
}

// ForEachSecret implements state.Installations with plain reads: the
// installation set, then one GET per installation.
func (s *State) ForEachSecret(ctx context.Context, fn func(owner, stored string) error) error {
	orgs, err := s.rdb.SMembers(ctx, s.k.insts()).Result()
	if err != nil {
		return fmt.Errorf("list installations: %w", err)
	}
	sort.Strings(orgs)
	for _, org := range orgs {
		inst, err := s.GetInstallation(ctx, org)
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		for _, v := range []string{inst.BotToken, inst.BotRefreshToken} {
			if v == "" {
				continue
			}
			if err := fn(inst.OrgID, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// encodeAgent returns the stored form of a (state.Agent's JSON).
func encodeAgent(a *state.Agent) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode agent: %w", err)
	}
	return b, nil
}

// decodeAgent parses a stored agent.
func decodeAgent(b []byte) (*state.Agent, error) {
	a := new(state.Agent)
	if err := json.Unmarshal(b, a); err != nil {
		return nil, err
	}
	return a, nil
}

// RegisterAgent implements state.Agents through Register (a replace token
// replaces the org's other agents here too).
func (s *State) RegisterAgent(ctx context.Context, h state.TokenHash, a *state.Agent, now time.Time, maxPerOrg int) error {
	_, err := s.Register(ctx, h, a, now, maxPerOrg)
	return err
}

// GetAgent implements state.Store.
func (s *State) GetAgent(ctx context.Context, id string) (*state.Agent, error) {
	return s.agentResult(s.rdb.Get(ctx, s.k.agent(id)))
}

// agentResult decodes the answer to a GET of an agent record: ErrNotFound
// when it is absent.
func (s *State) agentResult(cmd *redis.StringCmd) (*state.Agent, error) {
	rec, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, state.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get agent: %w", err)
	}
	return s.agentFromRecord(rec)
}

// ListAgents implements state.Store.
func (s *State) ListAgents(ctx context.Context, orgID string) ([]*state.Agent, error) {
	return s.decodeAgents(s.rdb.HGetAll(ctx, s.k.orgAgents(orgID)))
}

func (s *State) decodeAgents(cmd *redis.MapStringStringCmd) ([]*state.Agent, error) {
	recs, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	out := make([]*state.Agent, 0, len(recs))
	for _, rec := range recs {
		a, err := s.agentFromRecord(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteAgent implements state.Store.
func (s *State) DeleteAgent(ctx context.Context, id string) error {
	a, err := s.GetAgent(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.k.agent(id), s.k.accessToken(a.AccessTokenHash.String()),
			s.k.agentKey(hex.EncodeToString(a.SigningPublicKey[:])))
		p.HDel(ctx, s.k.orgAgents(a.OrgID), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete agent: %w", err)
	}
	return nil
}

// LookupAccessToken implements state.Store.
func (s *State) LookupAccessToken(ctx context.Context, h state.TokenHash, now time.Time) (state.AccessGrant, error) {
	g, err := accessGrant(s.rdb.HMGet(ctx, s.k.accessToken(h.String()), accessTokenFields...))
	if err != nil {
		return g, err
	}
	if !now.Before(g.ExpiresAt) {
		return g, state.ErrExpired
	}
	return g, nil
}

// accessTokenFields are the fields of an access token record, in the
// order accessGrant reads them.
var accessTokenFields = []string{"agent", "org", "exp"}

// accessGrant parses the answer to HMGET accessTokenFields of an access
// token record: ErrNotFound when the record is absent. It does not check
// the expiry.
func accessGrant(cmd *redis.SliceCmd) (state.AccessGrant, error) {
	v, err := cmd.Result()
	if err != nil {
		return state.AccessGrant{}, fmt.Errorf("lookup access token: %w", err)
	}
	if len(v) != len(accessTokenFields) {
		return state.AccessGrant{}, fmt.Errorf("lookup access token: %d fields, want %d", len(v), len(accessTokenFields))
	}
	agent, _ := v[0].(string)
	org, _ := v[1].(string)
	expS, _ := v[2].(string)
	if agent == "" {
		return state.AccessGrant{}, state.ErrNotFound
	}
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil {
		return state.AccessGrant{}, fmt.Errorf("lookup access token: bad expiry")
	}
	return state.AccessGrant{AgentID: agent, OrgID: org, ExpiresAt: time.UnixMilli(exp)}, nil
}

// maxTokenAgents bounds the token hash → agent id hints (one per agent
// that authenticated recently on this process, about 100 bytes each).
const maxTokenAgents = 10000

// LookupAgentByAccessToken implements state.Agents in one round trip when
// this process has seen the token before: an access token hash names one
// agent for the token's whole life (registration, renewal and replacement
// always write a fresh random token's hash; rekey keeps the token;
// deletion removes the record), so tokenAgents remembers which agent
// record to read along with the token record. Both are then read fresh, in
// one pipeline, and the hint is only trusted when the token record read
// names the same agent: a token that is gone, expired or names another
// agent is answered from the records read, exactly as LookupAccessToken
// and GetAgent would. Nothing read from Redis is cached. A first lookup
// (or one after the hint was evicted) is the two calls in sequence, and
// remembers the hint.
//
// The pipeline goes out from the caller's goroutine, not through the
// coalescer: for a lone call (the common case, at low rates one per pull
// and one per ack) the coalescer's goroutine hand-off cost more broker CPU
// than the round trip it saved (BenchmarkPullRepeated).
func (s *State) LookupAgentByAccessToken(ctx context.Context, h state.TokenHash, now time.Time) (state.AccessGrant, *state.Agent, error) {
	id, ok := s.tokenAgents.Get(h)
	if !ok {
		g, err := s.LookupAccessToken(ctx, h, now)
		if err != nil {
			return g, nil, err
		}
		s.tokenAgents.Put(h, g.AgentID)
		a, err := s.GetAgent(ctx, g.AgentID)
		return g, a, err
	}
	var tok *redis.SliceCmd
	var rec *redis.StringCmd
	// Every command holds its own reply or error; Pipelined's is only the
	// first (redis.Nil for an absent agent record).
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		tok = p.HMGet(ctx, s.k.accessToken(h.String()), accessTokenFields...)
		rec = p.Get(ctx, s.k.agent(id))
		return nil
	})
	g, err := accessGrant(tok)
	if errors.Is(err, state.ErrNotFound) {
		s.tokenAgents.Delete(h)
	}
	if err != nil {
		return g, nil, err
	}
	if !now.Before(g.ExpiresAt) {
		return g, nil, state.ErrExpired
	}
	if g.AgentID != id {
		// The hint was wrong for this token: read the agent it names.
		s.tokenAgents.Put(h, g.AgentID)
		a, err := s.GetAgent(ctx, g.AgentID)
		return g, a, err
	}
	a, err := s.agentResult(rec)
	return g, a, err
}

// PutOAuthState implements state.Store.
func (s *State) PutOAuthState(ctx context.Context, h state.TokenHash, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.k.oauthState(h.String()), "1", ttl).Err(); err != nil {
		return fmt.Errorf("put oauth state: %w", err)
	}
	return nil
}

// ConsumeOAuthState implements state.Store.
func (s *State) ConsumeOAuthState(ctx context.Context, h state.TokenHash) (bool, error) {
	err := s.rdb.GetDel(ctx, s.k.oauthState(h.String())).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("consume oauth state: %w", err)
	}
	return true, nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == 'p' then return redis.call('DEL', KEYS[1]) end
return 0
`)

func eventKeyPart(eventID string) string {
	// event ids are short ASCII; encode anyway so that no byte of untrusted
	// input shapes the key.
	return base64.RawURLEncoding.EncodeToString([]byte(eventID))
}

// claimCmd queues the claim of an event id on p: SET NX GET answers the
// previous value, so one atomic command both claims and reports an existing
// record.
func (s *State) claimCmd(ctx context.Context, p redis.Pipeliner, eventID string) *redis.Cmd {
	return p.Do(ctx, "SET", s.k.event(eventKeyPart(eventID)), "p", "PX", state.EventPendingTTL.Milliseconds(), "NX", "GET")
}

func claimResult(cmd *redis.Cmd) (state.EventClaim, error) {
	v, err := cmd.Text()
	switch {
	case errors.Is(err, redis.Nil):
		return state.EventClaimed, nil
	case err != nil:
		return 0, fmt.Errorf("claim event: %w", err)
	case v == "d":
		return state.EventDone, nil
	}
	return state.EventInProgress, nil
}

// ClaimEvent implements state.Store.
func (s *State) ClaimEvent(ctx context.Context, eventID string) (state.EventClaim, error) {
	var claim *redis.Cmd
	if err := s.co.do(ctx, func(p redis.Pipeliner) { claim = s.claimCmd(ctx, p, eventID) }); err != nil {
		return 0, fmt.Errorf("claim event: %w", err)
	}
	return claimResult(claim)
}

// ClaimEventAndListAgents implements state.Agents: ClaimEvent and
// ListAgents in one round trip (the webhook hot path), shared with
// concurrent callers.
func (s *State) ClaimEventAndListAgents(ctx context.Context, eventID, orgID string) (state.EventClaim, []*state.Agent, error) {
	var claim *redis.Cmd
	var recs *redis.MapStringStringCmd
	err := s.co.do(ctx, func(p redis.Pipeliner) {
		claim = s.claimCmd(ctx, p, eventID)
		recs = p.HGetAll(ctx, s.k.orgAgents(orgID))
	})
	if err != nil {
		return 0, nil, fmt.Errorf("claim event: %w", err)
	}
	c, err := claimResult(claim)
	if err != nil {
		return 0, nil, err
	}
	agents, err := s.decodeAgents(recs)
	if err != nil {
		return c, nil, err
	}
	return c, agents, nil
}

// CompleteEvent implements state.Store.
func (s *State) CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error {
	var set *redis.StatusCmd
	err := s.co.do(ctx, func(p redis.Pipeliner) { set = p.Set(ctx, s.k.event(eventKeyPart(eventID)), "d", ttl) })
	if err == nil {
		err = set.Err()
	}
	if err != nil {
		return fmt.Errorf("complete event: %w", err)
	}
	return nil
}

// ReleaseEvent implements state.Store. The script goes out by its hash;
// after a script cache flush (NOSCRIPT) it is sent again on its own, with
// its body.
func (s *State) ReleaseEvent(ctx context.Context, eventID string) error {
	keys := []string{s.k.event(eventKeyPart(eventID))}
	var run *redis.Cmd
	err := s.co.do(ctx, func(p redis.Pipeliner) { run = releaseScript.EvalSha(ctx, p, keys) })
	if err == nil {
		err = run.Err()
		if isNoScript(err) {
			err = releaseScript.Run(ctx, s.rdb, keys).Err()
		}
	}
	if err != nil {
		return fmt.Errorf("release event: %w", err)
	}
	return nil
}

// setNX records a one-time value under key for ttl through the coalescer,
// reporting whether it was new.
func (s *State) setNX(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	var set *redis.BoolCmd
	if err := s.co.do(ctx, func(p redis.Pipeliner) { set = p.SetNX(ctx, key, "1", ttl) }); err != nil {
		return false, err
	}
	return set.Result()
}

// UseNonce implements state.Store.
func (s *State) UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error) {
	ok, err := s.setNX(ctx, s.k.nonce(agentID, eventKeyPart(nonce)), ttl)
	if err != nil {
		return false, fmt.Errorf("record nonce: %w", err)
	}
	return ok, nil
}

// UseSignature implements state.Store.
func (s *State) UseSignature(ctx context.Context, h state.TokenHash, ttl time.Duration) (bool, error) {
	ok, err := s.setNX(ctx, s.k.usedSig(h.String()), ttl)
	if err != nil {
		return false, fmt.Errorf("record signature: %w", err)
	}
	return ok, nil
}

// bucketScript is a token bucket measured with the Redis server's clock
// (TIME on the master that owns the key), never a client's or a replica's,
// so that every broker replica sees the same refill. KEYS[1] bucket;
// ARGV rate (tokens/s), burst, clock offset in ms (0 outside tests).
// Returns {1, 0} when a token was taken, {0, ms until the next one}
// otherwise. Redis 7 replicates a script's effects, not the script, so
// reading TIME before writing is allowed.
var bucketScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local ok = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {ok, wait}
`)

// Allow implements state.Limiter with the Redis server's clock; now is
// not used (replicas' clocks may disagree).
func (s *State) Allow(ctx context.Context, key string, limit state.RateLimit, _ time.Time) (bool, time.Duration, error) {
	if limit.Rate <= 0 || limit.Burst < 1 {
		return true, 0, nil
	}
	res, err := bucketScript.Run(ctx, s.rdb, []string{s.k.bucket(key)},
		strconv.FormatFloat(limit.Rate, 'f', -1, 64), limit.Burst, s.clockOffset.Load()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate limit: unexpected script result")
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

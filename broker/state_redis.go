package broker

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
)

// RedisState implements State on Redis (go-redis v9), for any number of
// broker replicas sharing one Redis or Redis Cluster. Every key starts with
// <p> = the configured prefix followed by the hash tag "{state}:" (unless the
// prefix already holds a hash tag), so all state keys live in one Cluster
// slot and the multi-key scripts below work on Cluster too:
//
//	<p>inst:<org>              installation (JSON; tokens as keyring envelopes)
//	<p>insts                   set of org ids with an installation
//	<p>rtok:<hash>             registration token {org, exp, used}, expires exp+24h
//	<p>agent:<id>              agent (JSON, public keys only)
//	<p>agents:<org>            hash agent id → agent JSON (one round trip per fan-out)
//	<p>agentkey:<sig pub hex>  agent id by signing key (uniqueness index)
//	<p>atok:<hash>             access token {agent, org, exp}, expires at exp
//	<p>oauth:<hash>            OAuth state, expires after its TTL
//	<p>evt:<event_id>          Slack event dedup ("p" pending / "d" done)
//	<p>nonce:<agent>:<nonce>   send nonce replay record
//	<p>usig:<hash>             one-time signature replay record
//	<p>bucket:<key>            token bucket {t, ts}
//
// Races are closed with Lua scripts (registration, buckets), SET NX GET
// (event claims), SET NX (nonces, signatures), GETDEL (OAuth state) and
// WATCH transactions (installation updates).
type RedisState struct {
	rdb    redis.UniversalClient
	prefix string

	// decoded caches parsed agent records by their stored JSON (records
	// are immutable once written), saving a JSON and key decode per agent
	// on every fan-out.
	decodedMu sync.Mutex
	decoded   map[string]*Agent
}

const maxDecodedAgents = 10000

// agentFromRecord decodes rec, using the cache. It returns a copy.
func (s *RedisState) agentFromRecord(rec string) (*Agent, error) {
	s.decodedMu.Lock()
	a, ok := s.decoded[rec]
	s.decodedMu.Unlock()
	if !ok {
		var err error
		if a, err = decodeAgent([]byte(rec)); err != nil {
			return nil, err
		}
		s.decodedMu.Lock()
		if s.decoded == nil || len(s.decoded) >= maxDecodedAgents {
			s.decoded = make(map[string]*Agent)
		}
		s.decoded[rec] = a
		s.decodedMu.Unlock()
	}
	c := *a
	return &c, nil
}

var _ State = (*RedisState)(nil)

// NewRedisState returns a State on rdb whose keys all start with prefix
// (for example "sealrelay:"). The caller owns rdb; Close does not close it.
func NewRedisState(rdb redis.UniversalClient, prefix string) *RedisState {
	if !strings.Contains(prefix, "{") {
		prefix += "{state}:"
	}
	return &RedisState{rdb: rdb, prefix: prefix}
}

func (s *RedisState) key(parts ...string) string {
	k := s.prefix
	for _, p := range parts {
		k += p
	}
	return k
}

// Ping implements State.
func (s *RedisState) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis state ping: %w", err)
	}
	return nil
}

// Close implements State. The Redis client belongs to the caller and stays
// open.
func (s *RedisState) Close() error { return nil }

// PutInstallation implements State.
func (s *RedisState) PutInstallation(ctx context.Context, inst *Installation) error {
	b, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("encode installation: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.key("inst:", inst.OrgID), b, 0)
		p.SAdd(ctx, s.key("insts"), inst.OrgID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("put installation: %w", err)
	}
	return nil
}

// GetInstallation implements State.
func (s *RedisState) GetInstallation(ctx context.Context, orgID string) (*Installation, error) {
	b, err := s.rdb.Get(ctx, s.key("inst:", orgID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get installation: %w", err)
	}
	var inst Installation
	if err := json.Unmarshal(b, &inst); err != nil {
		return nil, fmt.Errorf("decode installation: %w", err)
	}
	return &inst, nil
}

// updateInstallation applies fn to the installation under WATCH, retrying on
// concurrent modification. fn returns false to skip the write.
func (s *RedisState) updateInstallation(ctx context.Context, orgID string, fn func(*Installation) (bool, error)) error {
	k := s.key("inst:", orgID)
	for attempt := 0; attempt < 10; attempt++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			b, err := tx.Get(ctx, k).Bytes()
			if errors.Is(err, redis.Nil) {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			var inst Installation
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
	return fmt.Errorf("update installation: %w", ErrConflict)
}

// RevokeInstallation implements State.
func (s *RedisState) RevokeInstallation(ctx context.Context, orgID string, at time.Time) error {
	return s.updateInstallation(ctx, orgID, func(inst *Installation) (bool, error) {
		inst.BotToken, inst.BotRefreshToken = "", ""
		inst.BotTokenExpiresAt = time.Time{}
		inst.Revoked = true
		inst.RevokedAt = at.UTC()
		inst.UpdatedAt = at.UTC()
		return true, nil
	})
}

// RewrapSecrets implements State.
func (s *RedisState) RewrapSecrets(ctx context.Context, fn func(stored, owner string) (string, bool, error)) (int, error) {
	orgs, err := s.rdb.SMembers(ctx, s.key("insts")).Result()
	if err != nil {
		return 0, fmt.Errorf("list installations: %w", err)
	}
	sort.Strings(orgs)
	total := 0
	for _, org := range orgs {
		n := 0
		err := s.updateInstallation(ctx, org, func(inst *Installation) (bool, error) {
			n = 0
			for _, f := range []*string{&inst.BotToken, &inst.BotRefreshToken} {
				if *f == "" {
					continue
				}
				nv, changed, err := fn(*f, inst.OrgID)
				if err != nil {
					return false, fmt.Errorf("rewrap secret of %s: %w", inst.OrgID, err)
				}
				if changed {
					*f = nv
					n++
				}
			}
			return n > 0, nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// PutRegistrationToken implements State.
func (s *RedisState) PutRegistrationToken(ctx context.Context, h TokenHash, orgID string, expiresAt time.Time) error {
	k := s.key("rtok:", h.String())
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "org", orgID, "exp", strconv.FormatInt(expiresAt.UnixMilli(), 10), "used", "0")
		p.PExpireAt(ctx, k, expiresAt.Add(UsedRegistrationTokenRetention))
		return nil
	})
	if err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	return nil
}

// agentRecord is the stored form of an Agent.
type agentRecord struct {
	ID                   string    `json:"id"`
	OrgID                string    `json:"org_id"`
	BoxPublicKey         string    `json:"box_public_key"`
	SigningPublicKey     string    `json:"signing_public_key"`
	CreatedAt            time.Time `json:"created_at"`
	AccessTokenHash      string    `json:"access_token_hash"`
	AccessTokenExpiresAt time.Time `json:"access_token_expires_at"`
	RespondUntil         time.Time `json:"respond_until,omitzero"`
}

func encodeAgent(a *Agent) ([]byte, error) {
	b, err := json.Marshal(agentRecord{
		ID: a.ID, OrgID: a.OrgID,
		BoxPublicKey: a.BoxPublicKey.String(), SigningPublicKey: a.SigningPublicKey.String(),
		CreatedAt: a.CreatedAt.UTC(), AccessTokenHash: a.AccessTokenHash.String(),
		AccessTokenExpiresAt: a.AccessTokenExpiresAt.UTC(), RespondUntil: a.RespondUntil.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("encode agent: %w", err)
	}
	return b, nil
}

func decodeAgent(b []byte) (*Agent, error) {
	var r agentRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode agent: %w", err)
	}
	box, err := crypto.ParseBoxPublicKey(r.BoxPublicKey)
	if err != nil {
		return nil, fmt.Errorf("decode agent %s: %w", r.ID, err)
	}
	sig, err := crypto.ParseSigningPublicKey(r.SigningPublicKey)
	if err != nil {
		return nil, fmt.Errorf("decode agent %s: %w", r.ID, err)
	}
	a := &Agent{ID: r.ID, OrgID: r.OrgID, BoxPublicKey: box, SigningPublicKey: sig,
		CreatedAt: r.CreatedAt, AccessTokenExpiresAt: r.AccessTokenExpiresAt, RespondUntil: r.RespondUntil}
	hb, err := hex.DecodeString(r.AccessTokenHash)
	if err != nil || len(hb) != len(a.AccessTokenHash) {
		return nil, fmt.Errorf("decode agent %s: bad access token hash", r.ID)
	}
	copy(a.AccessTokenHash[:], hb)
	return a, nil
}

var registerScript = redis.NewScript(`
local t = redis.call('HMGET', KEYS[1], 'org', 'exp', 'used')
if not t[1] or t[1] ~= ARGV[1] then return 'notfound' end
if t[3] == '1' then return 'used' end
if tonumber(t[2]) <= tonumber(ARGV[2]) then return 'expired' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], 'agent', ARGV[3], 'org', ARGV[1], 'exp', ARGV[5])
redis.call('PEXPIREAT', KEYS[5], ARGV[5])
return 'ok'
`)

// RegisterAgent implements State.
func (s *RedisState) RegisterAgent(ctx context.Context, h TokenHash, a *Agent, now time.Time) error {
	rec, err := encodeAgent(a)
	if err != nil {
		return err
	}
	keys := []string{
		s.key("rtok:", h.String()),
		s.key("agentkey:", hex.EncodeToString(a.SigningPublicKey[:])),
		s.key("agent:", a.ID),
		s.key("agents:", a.OrgID),
		s.key("atok:", a.AccessTokenHash.String()),
	}
	res, err := registerScript.Run(ctx, s.rdb, keys, a.OrgID, now.UnixMilli(), a.ID, rec, a.AccessTokenExpiresAt.UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("register agent: %w", err)
	}
	switch res {
	case "ok":
		return nil
	case "notfound":
		return ErrNotFound
	case "used":
		return ErrUsed
	case "expired":
		return ErrExpired
	case "exists":
		return ErrAgentExists
	}
	return fmt.Errorf("register agent: unexpected script result %q", res)
}

// GetAgent implements State.
func (s *RedisState) GetAgent(ctx context.Context, id string) (*Agent, error) {
	b, err := s.rdb.Get(ctx, s.key("agent:", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get agent: %w", err)
	}
	return s.agentFromRecord(string(b))
}

// ListAgents implements State.
func (s *RedisState) ListAgents(ctx context.Context, orgID string) ([]*Agent, error) {
	return s.decodeAgents(s.rdb.HGetAll(ctx, s.key("agents:", orgID)))
}

func (s *RedisState) decodeAgents(cmd *redis.MapStringStringCmd) ([]*Agent, error) {
	recs, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	out := make([]*Agent, 0, len(recs))
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

// DeleteAgent implements State.
func (s *RedisState) DeleteAgent(ctx context.Context, id string) error {
	a, err := s.GetAgent(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.key("agent:", id), s.key("atok:", a.AccessTokenHash.String()),
			s.key("agentkey:", hex.EncodeToString(a.SigningPublicKey[:])))
		p.HDel(ctx, s.key("agents:", a.OrgID), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete agent: %w", err)
	}
	return nil
}

// LookupAccessToken implements State.
func (s *RedisState) LookupAccessToken(ctx context.Context, h TokenHash, now time.Time) (AccessGrant, error) {
	v, err := s.rdb.HMGet(ctx, s.key("atok:", h.String()), "agent", "org", "exp").Result()
	if err != nil {
		return AccessGrant{}, fmt.Errorf("lookup access token: %w", err)
	}
	agent, _ := v[0].(string)
	org, _ := v[1].(string)
	expS, _ := v[2].(string)
	if agent == "" {
		return AccessGrant{}, ErrNotFound
	}
	exp, err := strconv.ParseInt(expS, 10, 64)
	if err != nil {
		return AccessGrant{}, fmt.Errorf("lookup access token: bad expiry")
	}
	g := AccessGrant{AgentID: agent, OrgID: org, ExpiresAt: time.UnixMilli(exp)}
	if !now.Before(g.ExpiresAt) {
		return g, ErrExpired
	}
	return g, nil
}

// PutOAuthState implements State.
func (s *RedisState) PutOAuthState(ctx context.Context, h TokenHash, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.key("oauth:", h.String()), "1", ttl).Err(); err != nil {
		return fmt.Errorf("put oauth state: %w", err)
	}
	return nil
}

// ConsumeOAuthState implements State.
func (s *RedisState) ConsumeOAuthState(ctx context.Context, h TokenHash) (bool, error) {
	err := s.rdb.GetDel(ctx, s.key("oauth:", h.String())).Err()
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

// claimCmd queues the claim of an event id: SET NX GET answers the previous
// value, so one atomic command both claims and reports an existing record.
func (s *RedisState) claimCmd(ctx context.Context, c interface {
	Do(context.Context, ...any) *redis.Cmd
}, eventID string) *redis.Cmd {
	return c.Do(ctx, "SET", s.key("evt:", eventKeyPart(eventID)), "p", "PX", EventPendingTTL.Milliseconds(), "NX", "GET")
}

func claimResult(cmd *redis.Cmd) (EventClaim, error) {
	v, err := cmd.Text()
	switch {
	case errors.Is(err, redis.Nil):
		return EventClaimed, nil
	case err != nil:
		return 0, fmt.Errorf("claim event: %w", err)
	case v == "d":
		return EventDone, nil
	}
	return EventInProgress, nil
}

// ClaimEvent implements State.
func (s *RedisState) ClaimEvent(ctx context.Context, eventID string) (EventClaim, error) {
	return claimResult(s.claimCmd(ctx, s.rdb, eventID))
}

// ClaimEventListAgents is ClaimEvent and ListAgents in one round trip (the
// webhook hot path).
func (s *RedisState) ClaimEventListAgents(ctx context.Context, eventID, orgID string) (EventClaim, []*Agent, error) {
	pipe := s.rdb.Pipeline()
	claim := s.claimCmd(ctx, pipe, eventID)
	recs := pipe.HGetAll(ctx, s.key("agents:", orgID))
	_, _ = pipe.Exec(ctx) // errors are read per command below
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

// CompleteEvent implements State.
func (s *RedisState) CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.key("evt:", eventKeyPart(eventID)), "d", ttl).Err(); err != nil {
		return fmt.Errorf("complete event: %w", err)
	}
	return nil
}

// ReleaseEvent implements State.
func (s *RedisState) ReleaseEvent(ctx context.Context, eventID string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.key("evt:", eventKeyPart(eventID))}).Err(); err != nil {
		return fmt.Errorf("release event: %w", err)
	}
	return nil
}

// UseNonce implements State.
func (s *RedisState) UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.key("nonce:", agentID, ":", eventKeyPart(nonce)), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("record nonce: %w", err)
	}
	return ok, nil
}

// UseSignature implements State.
func (s *RedisState) UseSignature(ctx context.Context, h TokenHash, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.key("usig:", h.String()), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("record signature: %w", err)
	}
	return ok, nil
}

var bucketScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
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

// Allow implements State.
func (s *RedisState) Allow(ctx context.Context, key string, limit RateLimit, now time.Time) (bool, time.Duration, error) {
	if limit.Rate <= 0 || limit.Burst < 1 {
		return true, 0, nil
	}
	res, err := bucketScript.Run(ctx, s.rdb, []string{s.key("bucket:", key)},
		strconv.FormatFloat(limit.Rate, 'f', -1, 64), limit.Burst, now.UnixMilli()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("rate limit: unexpected script result")
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}

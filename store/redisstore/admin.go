package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ state.Admin = (*State)(nil)

// lastPullRetention is how long a last pull record outlives the pull it
// records (refreshed by every recorded pull): an agent silent for longer
// shows as never having pulled (and idle).
const lastPullRetention = 400 * 24 * time.Hour

// Keys of the admin operations (same hash tag as every state key):
//
//	<p>lastpull:<agent id>   unix milliseconds of the agent's last recorded pull

// ListInstallations implements state.Admin.
func (s *State) ListInstallations(ctx context.Context) ([]*state.Installation, error) {
	orgs, err := s.rdb.SMembers(ctx, s.k.insts()).Result()
	if err != nil {
		return nil, fmt.Errorf("list installations: %w", err)
	}
	sort.Strings(orgs)
	if len(orgs) == 0 {
		return []*state.Installation{}, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(orgs))
	for i, org := range orgs {
		cmds[i] = pipe.Get(ctx, s.k.inst(org))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("list installations: %w", err)
	}
	out := make([]*state.Installation, 0, len(orgs))
	for i, c := range cmds {
		b, err := c.Bytes()
		if errors.Is(err, redis.Nil) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list installations: %w", err)
		}
		inst := new(state.Installation)
		if err := json.Unmarshal(b, inst); err != nil {
			return nil, fmt.Errorf("decode installation %s: %w", orgs[i], err)
		}
		out = append(out, inst)
	}
	return out, nil
}

// ListAllAgents implements state.Admin: the agents hashes of every org in
// the installation set (an agent only registers for an installed org, and
// installation records are never deleted, only marked revoked).
func (s *State) ListAllAgents(ctx context.Context) ([]*state.Agent, error) {
	orgs, err := s.rdb.SMembers(ctx, s.k.insts()).Result()
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(orgs))
	for i, org := range orgs {
		cmds[i] = pipe.HGetAll(ctx, s.k.orgAgents(org))
	}
	if len(orgs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
	}
	out := []*state.Agent{}
	for _, c := range cmds {
		for _, rec := range c.Val() {
			a, err := s.agentFromRecord(rec)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RecordPull implements state.Admin.
func (s *State) RecordPull(ctx context.Context, agentID string, at time.Time) error {
	err := s.rdb.Set(ctx, s.k.lastPull(agentID), strconv.FormatInt(at.UnixMilli(), 10), lastPullRetention).Err()
	if err != nil {
		return fmt.Errorf("record last pull of %s: %w", agentID, err)
	}
	return nil
}

// LastPulls implements state.Admin (one MGET: every key is in one slot).
func (s *State) LastPulls(ctx context.Context, ids []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.k.lastPull(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read last pulls: %w", err)
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		ms, err := strconv.ParseInt(str, 10, 64)
		if err != nil {
			continue // not ours; shows as never pulled
		}
		out[ids[i]] = time.UnixMilli(ms).UTC()
	}
	return out, nil
}

// ForgetPull implements state.Admin.
func (s *State) ForgetPull(ctx context.Context, agentID string) error {
	if err := s.rdb.Del(ctx, s.k.lastPull(agentID)).Err(); err != nil {
		return fmt.Errorf("forget last pull of %s: %w", agentID, err)
	}
	return nil
}

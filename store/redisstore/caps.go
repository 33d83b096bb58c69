package redisstore

import (
	"context"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ state.Agents = (*State)(nil)

// setAgentRecordScript replaces an agent record in both of its places
// (agent:<id> and the org's agents hash) when it is still ARGV[1]. KEYS:
// agent, agents of org; ARGV: expected record, new record, agent id.
var setAgentRecordScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 'notfound' end
if v ~= ARGV[1] then return 'changed' end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2])
return 'ok'
`)

// SetRespondUntil implements state.Agents. It compares and swaps the
// record, retrying a few times when another writer changed it meanwhile.
func (s *State) SetRespondUntil(ctx context.Context, id string, until time.Time) error {
	for range 3 {
		old, err := s.rdb.Get(ctx, s.k.agent(id)).Result()
		if errors.Is(err, redis.Nil) {
			return state.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("set respond capability: %w", err)
		}
		a, err := decodeAgent([]byte(old))
		if err != nil {
			return err
		}
		a.RespondUntil = until
		rec, err := encodeAgent(a)
		if err != nil {
			return err
		}
		res, err := setAgentRecordScript.Run(ctx, s.rdb, []string{s.k.agent(id), s.k.orgAgents(a.OrgID)},
			old, string(rec), id).Text()
		if err != nil {
			return fmt.Errorf("set respond capability: %w", err)
		}
		switch res {
		case "ok":
			return nil
		case "notfound":
			return state.ErrNotFound
		}
	}
	return fmt.Errorf("set respond capability of %s: record kept changing", id)
}

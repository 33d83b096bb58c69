package redisstore

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/state"
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

// SetRespondUntil implements state.Agents: a compare-and-swap of the
// record (updateAgentRecord).
func (s *State) SetRespondUntil(ctx context.Context, id string, until time.Time) error {
	return s.updateAgentRecord(ctx, "set respond capability", id, func(a *state.Agent) { a.RespondUntil = until },
		setAgentRecordScript, func(old, _ *state.Agent) []string {
			return []string{s.k.agent(id), s.k.orgAgents(old.OrgID)}
		}, nil)
}

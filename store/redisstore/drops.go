package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

var _ state.Drops = (*State)(nil)

// Drop records of agent A (all under the state's hash tag):
//
//	drops:A      HASH  count, r:<reason> → n, first, last (unix s), trunc
//	drops:A:ids  LIST  Slack event ids, in drop order, at most 100
//	dropsp:A     HASH  the pending notice: the same fields plus token
//	dropsp:A:ids LIST  its event ids
//
// Every key expires DropRecordTTL after the last drop.
func (s *State) dropKeys(agentID string) []string { return s.k.drops(agentID) }

var recordDropScript = redis.NewScript(`
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'r:' .. ARGV[1], 1)
local at = tonumber(ARGV[3])
local first = redis.call('HGET', KEYS[1], 'first')
if not first or tonumber(first) > at then redis.call('HSET', KEYS[1], 'first', ARGV[3]) end
local last = redis.call('HGET', KEYS[1], 'last')
if not last or tonumber(last) < at then redis.call('HSET', KEYS[1], 'last', ARGV[3]) end
if ARGV[2] ~= '' then
  if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[4]) then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
  else
    redis.call('HSET', KEYS[1], 'trunc', 1)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// RecordDrop implements state.Drops.
func (s *State) RecordDrop(ctx context.Context, agentID, reason, eventID string, at time.Time) error {
	k := s.dropKeys(agentID)
	err := recordDropScript.Run(ctx, s.rdb, k[:2], reason, eventID, at.Unix(),
		protocol.MaxDropNoticeEventIDs, state.DropRecordTTL.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("record drop: %w", err)
	}
	return nil
}

var takeDropsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 0 then
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  redis.call('DEL', KEYS[4])
  redis.call('RENAME', KEYS[1], KEYS[3])
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
  redis.call('HSET', KEYS[3], 'token', ARGV[1])
end
return {redis.call('HGETALL', KEYS[3]), redis.call('LRANGE', KEYS[4], 0, -1)}
`)

// TakeDrops implements state.Drops.
func (s *State) TakeDrops(ctx context.Context, agentID string) (state.PendingDrops, bool, error) {
	tok, err := crypto.RandomBytes(16)
	if err != nil {
		return state.PendingDrops{}, false, err
	}
	res, err := takeDropsScript.Run(ctx, s.rdb, s.dropKeys(agentID), fmt.Sprintf("%x", tok)).Slice()
	if errors.Is(err, redis.Nil) {
		return state.PendingDrops{}, false, nil
	}
	if err != nil {
		return state.PendingDrops{}, false, fmt.Errorf("take drops: %w", err)
	}
	if len(res) != 2 {
		return state.PendingDrops{}, false, errors.New("take drops: malformed reply")
	}
	fields, _ := res[0].([]interface{})
	ids, _ := res[1].([]interface{})
	var rec state.DropRecord
	rec.Reasons = map[string]int{}
	var token string
	for i := 0; i+1 < len(fields); i += 2 {
		f, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		n, _ := strconv.ParseInt(v, 10, 64)
		switch {
		case f == "token":
			token = v
		case f == "count":
			rec.Count = int(n)
		case f == "first":
			rec.First = n
		case f == "last":
			rec.Last = n
		case f == "trunc":
			rec.Truncated = n != 0
		case strings.HasPrefix(f, "r:"):
			rec.Reasons[f[2:]] = int(n)
		}
	}
	for _, id := range ids {
		if v, ok := id.(string); ok {
			rec.EventIDs = append(rec.EventIDs, v)
		}
	}
	if token == "" || rec.Count == 0 {
		return state.PendingDrops{}, false, nil
	}
	return state.PendingDrops{Token: token, Notice: rec.Notice()}, true, nil
}

var confirmDropsScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
`)

// ConfirmDrops implements state.Drops.
func (s *State) ConfirmDrops(ctx context.Context, agentID, token string) error {
	k := s.dropKeys(agentID)
	if err := confirmDropsScript.Run(ctx, s.rdb, k[2:], token).Err(); err != nil {
		return fmt.Errorf("confirm drops: %w", err)
	}
	return nil
}

package redisstore

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/state"
)

// redisHolds is the state.HoldHub of Redis mode. A hold is the key
// hold:<id> = <replica><org> (a pointer, never the answer),
// set with a TTL a little past the deadline. A respond on any replica claims
// it with one script that turns the record into an "answered" tombstone and
// publishes <id><sealed answer> on the holding replica's channel
// held:<replica> (keys.go); the deadline turns it into an "expired"
// tombstone instead. The wake-up is the same mechanism as the inbox's
// (the inbox store): one pub/sub subscription per process.
type redisHolds struct {
	rdb     redis.UniversalClient
	k       stateKeys
	replica string // 16 hex
	log     *slog.Logger

	mu      sync.Mutex
	ps      *redis.PubSub
	waiting map[string]chan []byte
	done    chan struct{}
}

// replicaIDLen is the length of the replica id inside a hold record.
const replicaIDLen = 16

// holdClaimScript: KEYS[1] hold key; ARGV org, channel prefix, tombstone
// ms, payload. Returns a state.HoldClaim.
var holdClaimScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local kind = string.sub(v, 1, 2)
if kind == 'e:' or kind == 'a:' then
  if string.sub(v, 3) ~= ARGV[1] then return 0 end
  if kind == 'e:' then return 2 end
  return 3
end
if string.sub(v, 17) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'a:' .. ARGV[1], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[2] .. string.sub(v, 1, 16), ARGV[4])
return 1
`)

// holdExpireScript: KEYS[1] hold key; ARGV tombstone ms. Returns 1 when
// the deadline decided the hold, 0 when a respond claimed it first.
var holdExpireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 1 end
local kind = string.sub(v, 1, 2)
if kind == 'a:' then return 0 end
if kind == 'e:' then return 1 end
redis.call('SET', KEYS[1], 'e:' .. string.sub(v, 17), 'PX', ARGV[1])
return 1
`)

func newRedisHolds(rdb redis.UniversalClient, k stateKeys, log *slog.Logger) (*redisHolds, error) {
	b, err := crypto.RandomBytes(replicaIDLen / 2)
	if err != nil {
		return nil, fmt.Errorf("hold hub: replica id: %w", err)
	}
	return &redisHolds{rdb: rdb, k: k, replica: hex.EncodeToString(b), log: log,
		waiting: map[string]chan []byte{}, done: make(chan struct{})}, nil
}

func (r *redisHolds) key(id string) string  { return r.k.hold(id) }
func (r *redisHolds) channelPrefix() string { return r.k.heldChannels() }

// subscribe starts the replica's subscription on first use, so a broker
// that never holds (every Baudbot org) keeps no subscriber connection.
func (r *redisHolds) subscribe(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ps != nil {
		return nil
	}
	select {
	case <-r.done:
		return fmt.Errorf("hold hub closed")
	default:
	}
	ch := r.channelPrefix() + r.replica
	ps := r.rdb.Subscribe(ctx, ch)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return fmt.Errorf("hold hub: subscribe %s: %w", ch, err)
	}
	r.ps = ps
	go r.listen(ps.Channel(redis.WithChannelSize(1024)))
	return nil
}

func (r *redisHolds) listen(ch <-chan *redis.Message) {
	for m := range ch {
		p := m.Payload
		if len(p) <= state.HoldIDLength {
			continue
		}
		id, sealed := p[:state.HoldIDLength], []byte(p[state.HoldIDLength:])
		r.mu.Lock()
		c := r.waiting[id]
		r.mu.Unlock()
		if c == nil {
			r.log.Warn("held request answer arrived after the request was answered", "hold_id", id)
			continue
		}
		select {
		case c <- sealed:
		default:
		}
	}
}

// Hold implements state.HoldHub.
func (r *redisHolds) Hold(ctx context.Context, id, org string, ttl time.Duration) (<-chan []byte, error) {
	if err := r.subscribe(ctx); err != nil {
		return nil, err
	}
	c := make(chan []byte, 1)
	r.mu.Lock()
	r.waiting[id] = c
	r.mu.Unlock()
	if err := r.rdb.Set(ctx, r.key(id), r.replica+org, ttl).Err(); err != nil {
		r.Release(id)
		return nil, fmt.Errorf("hold record: %w", err)
	}
	return c, nil
}

// Claim implements state.HoldHub.
func (r *redisHolds) Claim(ctx context.Context, id, org string, sealed []byte) (state.HoldClaim, error) {
	n, err := holdClaimScript.Run(ctx, r.rdb, []string{r.key(id)}, org, r.channelPrefix(),
		state.HoldTombstone.Milliseconds(), id+string(sealed)).Int()
	if err != nil {
		return state.HoldNotHeld, fmt.Errorf("hold claim: %w", err)
	}
	return state.HoldClaim(n), nil
}

// Expire implements state.HoldHub.
func (r *redisHolds) Expire(ctx context.Context, id string) (bool, error) {
	n, err := holdExpireScript.Run(ctx, r.rdb, []string{r.key(id)}, state.HoldTombstone.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("hold expire: %w", err)
	}
	return n == 1, nil
}

// Release implements state.HoldHub.
func (r *redisHolds) Release(id string) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

// Close implements state.HoldHub.
func (r *redisHolds) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.done:
		return nil
	default:
		close(r.done)
	}
	if r.ps != nil {
		return r.ps.Close()
	}
	return nil
}

var _ state.HoldHub = (*redisHolds)(nil)

// NewHoldHub implements state.HoldHubs: a hub with its own replica id
// whose records and channels share the state's key prefix.
func (s *State) NewHoldHub(log *slog.Logger) (state.HoldHub, error) {
	if log == nil {
		log = slog.Default()
	}
	return newRedisHolds(s.rdb, s.k, log)
}

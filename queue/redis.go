package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a RedisStore.
type RedisOptions struct {
	Options
	// Prefix starts every key and channel name the store uses. Default "sr:".
	Prefix string
	// SweepInterval is how often the sweeper looks for inboxes nobody pulled
	// during the last interval, applies retention to them and deletes the
	// keys of empty ones. Default one minute.
	SweepInterval time.Duration
	// PollInterval is the safety net of a waiting Pull: it pulls again at
	// least this often even when no wake-up arrived. Default 3 s.
	PollInterval time.Duration
	// Logger receives operational warnings. Default slog.Default().
	Logger *slog.Logger
}

func (o RedisOptions) withDefaults() RedisOptions {
	o.Options = o.Options.WithDefaults()
	if o.Prefix == "" {
		o.Prefix = "sr:"
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// RedisStore is the Store for many broker replicas sharing one Redis (≥ 7.0)
// or Redis Cluster.
//
// # Keys
//
// Every key of inbox X lives under one hash tag, so an inbox is one Cluster
// slot and every script touches a single slot:
//
//	<prefix>ib:{X}:seq    STRING  id counter (starts at server-ms × 1000, so ids
//	                              are never reused after the inbox is deleted)
//	<prefix>ib:{X}:body   HASH    id → message body
//	<prefix>ib:{X}:dlv    HASH    id → delivery count (absent = 0)
//	<prefix>ib:{X}:ready  ZSET    ids ready to lease, score = id (FIFO)
//	<prefix>ib:{X}:lease  ZSET    leased ids, score = lease deadline (server ms)
//	<prefix>ib:{X}:enq    ZSET    ready and leased ids, score = enqueue time (ms)
//	<prefix>ib:{X}:dead   ZSET    dead-lettered ids, score = enqueue time (ms)
//
// Two keys sit outside any hash tag: the registry <prefix>inboxes (ZSET of
// inbox names scored by last activity, client clock, used only by the
// sweeper) and the sweeper lock <prefix>sweep:lock. In Redis Cluster both land
// on one node, which sees one registry write per new inbox and per inbox per
// sweep interval; nothing on the hot path depends on them. Wake-ups use the
// ordinary (non-sharded) channel <prefix>wake with the inbox name as payload,
// which Cluster broadcasts to every node.
//
// Every deadline and timestamp inside Redis comes from the server clock
// (TIME inside the scripts), so replicas with skewed clocks agree on leases.
// An empty inbox (no ready, leased or dead message) leaves no key behind.
//
// # Long polling
//
// No blocking Redis command is used. Enqueue publishes the inbox name on
// <prefix>wake when the inbox had nothing ready; each RedisStore holds one
// pub/sub connection and wakes its local waiters of that inbox, which pull
// again. A waiter also pulls again at the earliest lease deadline of its inbox
// (when a lapsed lease makes a message available) and every PollInterval as a
// safety net. When the pub/sub connection is re-established every waiter is
// woken, since notices may have been lost while it was down.
//
// # Durability
//
// Enqueue returns after Redis executed the enqueue script. Whether the
// message survives a crash of Redis is Redis's persistence setting: with
// appendonly yes and appendfsync always, Redis fsyncs the AOF before it
// replies, so nothing Enqueue returned for is lost on kill -9 or power loss
// (checked by the conformance suite with a private redis-server); with
// appendfsync everysec (Redis's default for AOF) up to about one second of
// acknowledged enqueues, acks and leases can be lost; with RDB snapshots only,
// everything since the last snapshot. A lost lease or ack only causes a
// redelivery, never a loss. Leases survive a restart of Redis: their deadlines
// are server timestamps, so leased messages come back once the deadline
// passes. With replication, Redis replicates asynchronously; a failover may
// lose the last writes unless WAIT/WAITAOF is used, which this store does not.
//
// # Redis Cluster
//
// Pass a *redis.ClusterClient. To try it locally, start three nodes with
// cluster-enabled yes (redis-server --port 7000 --cluster-enabled yes
// --cluster-config-file n1.conf, likewise 7001 and 7002), join them with
// redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
// --cluster-replicas 0 --cluster-yes, and run the tests with
// REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002.
type RedisStore struct {
	c    redis.UniversalClient
	opts RedisOptions
	log  *slog.Logger

	wakeChannel string
	registry    string
	sweepLock   string

	hub    *hub
	ps     *redis.PubSub
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	touchMu sync.Mutex
	touched map[string]time.Time // inbox → last registry write by this process
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store using client, which it does not close. It
// checks the server version, subscribes to the wake-up channel (waiting for
// the subscription to be confirmed) and starts the sweeper.
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) (*RedisStore, error) {
	opts = opts.withDefaults()
	if client == nil {
		return nil, fmt.Errorf("queue: NewRedisStore: nil client")
	}
	s := &RedisStore{
		c:           client,
		opts:        opts,
		log:         opts.Logger.With("component", "queue.redis"),
		wakeChannel: opts.Prefix + "wake",
		registry:    opts.Prefix + "inboxes",
		sweepLock:   opts.Prefix + "sweep:lock",
		hub:         newHub(),
		closed:      make(chan struct{}),
		touched:     make(map[string]time.Time),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("queue: redis ping: %w", err)
	}
	s.ps = client.Subscribe(ctx, s.wakeChannel)
	if _, err := s.ps.Receive(ctx); err != nil {
		_ = s.ps.Close()
		return nil, fmt.Errorf("queue: redis subscribe %s: %w", s.wakeChannel, err)
	}
	ch := s.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	s.wg.Add(2)
	go s.listen(ch)
	go s.sweeper()
	return s, nil
}

// listen dispatches wake-up notices to local waiters. go-redis reconnects and
// resubscribes by itself; the confirmation of that subscription arrives here
// as a *redis.Subscription, upon which every waiter is woken.
func (s *RedisStore) listen(ch <-chan interface{}) {
	defer s.wg.Done()
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			s.hub.wake(m.Payload)
		case *redis.Subscription:
			s.log.Debug("wake-up channel (re)subscribed", "channel", m.Channel)
			s.hub.wakeAll()
		}
	}
}

// keys returns the KEYS of every inbox script: seq body dlv ready lease enq dead.
func (s *RedisStore) keys(inbox string) []string {
	base := s.opts.Prefix + "ib:{" + inbox + "}:"
	return []string{base + "seq", base + "body", base + "dlv", base + "ready", base + "lease", base + "enq", base + "dead"}
}

// luaCommon is prepended to every inbox script. All scripts take the same
// seven KEYS: seq body dlv ready lease enq dead. Numbers are formatted with
// %d because Lua's default number formatting (%.14g) would round ids.
const luaCommon = `
local K_SEQ, K_BODY, K_DLV, K_READY, K_LEASE, K_ENQ, K_DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local function fmt(n) return string.format('%d', n) end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(id)
  redis.call('HDEL', K_BODY, id)
  redis.call('HDEL', K_DLV, id)
  redis.call('ZREM', K_READY, id)
  redis.call('ZREM', K_LEASE, id)
  redis.call('ZREM', K_ENQ, id)
  redis.call('ZREM', K_DEAD, id)
end
local function deadletter(id)
  local at = redis.call('ZSCORE', K_ENQ, id) or '0'
  redis.call('ZREM', K_READY, id)
  redis.call('ZREM', K_LEASE, id)
  redis.call('ZREM', K_ENQ, id)
  redis.call('ZADD', K_DEAD, at, id)
end
-- retain drops up to 1000 messages per set enqueued before now - retention.
local function retain(now, retention)
  local cutoff = '(' .. fmt(now - retention)
  for _, key in ipairs({K_ENQ, K_DEAD}) do
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, 1000)
    for _, id in ipairs(ids) do drop(id) end
  end
end
-- cleanup deletes the counter of an inbox that holds nothing; every other
-- key disappears with its last member.
local function cleanup()
  if redis.call('HLEN', K_BODY) == 0 then
    redis.call('DEL', K_SEQ)
    return 1
  end
  return 0
end
`

// enqueueScript stores one message.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: body, capacity, retention ms, wake channel, inbox name
//	returns: {status, id}; status 0 = stored, 1 = stored and the inbox was
//	         created, 2 = inbox full (nothing stored, id "")
//
// It publishes the inbox name on the wake channel when no message was ready,
// which is when a Pull may be waiting.
var enqueueScript = redis.NewScript(luaCommon + `
local now = nowms()
local capacity = tonumber(ARGV[2])
local nready = redis.call('ZCARD', K_READY)
if nready + redis.call('ZCARD', K_LEASE) >= capacity then
  retain(now, tonumber(ARGV[3]))
  nready = redis.call('ZCARD', K_READY)
  if nready + redis.call('ZCARD', K_LEASE) >= capacity then
    return {2, ''}
  end
end
local status = 0
if redis.call('EXISTS', K_SEQ) == 0 then
  redis.call('SET', K_SEQ, fmt(now * 1000))
  status = 1
end
local id = fmt(redis.call('INCR', K_SEQ))
redis.call('HSET', K_BODY, id, ARGV[1])
redis.call('ZADD', K_READY, id, id)
redis.call('ZADD', K_ENQ, fmt(now), id)
if nready == 0 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return {status, id}
`)

// Enqueue implements Store.
func (s *RedisStore) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	if err := checkEnqueue(inbox, body); err != nil {
		return "", err
	}
	if s.isClosed() {
		return "", ErrClosed
	}
	res, err := enqueueScript.Run(ctx, s.c, s.keys(inbox), body, s.opts.Capacity,
		s.opts.Retention.Milliseconds(), s.wakeChannel, inbox).Slice()
	if err != nil {
		return "", fmt.Errorf("queue: enqueue into %s: %w", inbox, err)
	}
	if len(res) != 2 {
		return "", fmt.Errorf("queue: enqueue into %s: unexpected reply %v", inbox, res)
	}
	status, _ := res[0].(int64)
	id, _ := res[1].(string)
	switch status {
	case 2:
		return "", fmt.Errorf("%w: %s holds %d messages", ErrInboxFull, inbox, s.opts.Capacity)
	case 1:
		// New inbox: make it known to the sweeper. NX keeps the score of an
		// entry that survived an earlier incarnation of the inbox.
		if err := s.c.ZAddNX(ctx, s.registry, redis.Z{Score: float64(time.Now().UnixMilli()), Member: inbox}).Err(); err != nil {
			s.log.Warn("registering inbox for the sweeper failed; it is registered on its next pull", "inbox", inbox, "err", err)
		}
	}
	if id == "" {
		return "", fmt.Errorf("queue: enqueue into %s: empty id in reply", inbox)
	}
	return id, nil
}

// pullScript applies retention, reclaims lapsed leases (dead-lettering
// messages that used up their deliveries) and leases up to n ready messages.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: n, lease ms, max deliveries, retention ms
//	returns: {now ms, earliest lease deadline ms or -1,
//	          id, body, deliveries, enqueued ms, id, body, ...}
var pullScript = redis.NewScript(luaCommon + `
local now = nowms()
local want = tonumber(ARGV[1])
local maxd = tonumber(ARGV[3])
retain(now, tonumber(ARGV[4]))
local lapsed = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', fmt(now), 'LIMIT', 0, 1000)
for _, id in ipairs(lapsed) do
  if tonumber(redis.call('HGET', K_DLV, id) or '0') >= maxd then
    deadletter(id)
  else
    redis.call('ZREM', K_LEASE, id)
    redis.call('ZADD', K_READY, id, id)
  end
end
local out = {fmt(now), '-1'}
local got = 0
local deadline = fmt(now + tonumber(ARGV[2]))
while got < want do
  local popped = redis.call('ZPOPMIN', K_READY, want - got)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local id = popped[i]
    local body = redis.call('HGET', K_BODY, id)
    if not body then
      drop(id)
    elseif tonumber(redis.call('HGET', K_DLV, id) or '0') >= maxd then
      deadletter(id)
    else
      local d = redis.call('HINCRBY', K_DLV, id, 1)
      redis.call('ZADD', K_LEASE, deadline, id)
      out[#out + 1] = id
      out[#out + 1] = body
      out[#out + 1] = d
      out[#out + 1] = redis.call('ZSCORE', K_ENQ, id) or '0'
      got = got + 1
    end
  end
end
local first = redis.call('ZRANGE', K_LEASE, 0, 0, 'WITHSCORES')
if #first > 0 then out[2] = first[2] end
if got == 0 then cleanup() end
return out
`)

// pullOnce runs the pull script. next is the time until the inbox's earliest
// lease deadline by the server clock, or -1 when nothing is leased.
func (s *RedisStore) pullOnce(ctx context.Context, inbox string, max int) (msgs []Message, next time.Duration, err error) {
	res, err := pullScript.Run(ctx, s.c, s.keys(inbox), max, s.opts.Lease.Milliseconds(),
		s.opts.MaxDeliveries, s.opts.Retention.Milliseconds()).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("queue: pull from %s: %w", inbox, err)
	}
	if len(res) < 2 || (len(res)-2)%4 != 0 {
		return nil, 0, fmt.Errorf("queue: pull from %s: malformed reply of %d items", inbox, len(res))
	}
	now, err1 := replyInt(res[0])
	first, err2 := replyInt(res[1])
	if err := errors.Join(err1, err2); err != nil {
		return nil, 0, fmt.Errorf("queue: pull from %s: %w", inbox, err)
	}
	next = -1
	if first >= 0 {
		next = time.Duration(max64(first-now, 0)) * time.Millisecond
	}
	msgs = make([]Message, 0, (len(res)-2)/4)
	for i := 2; i < len(res); i += 4 {
		id, _ := res[i].(string)
		body, _ := res[i+1].(string)
		d, err1 := replyInt(res[i+2])
		enq, err2 := replyInt(res[i+3])
		if err := errors.Join(err1, err2); err != nil || id == "" {
			return nil, 0, fmt.Errorf("queue: pull from %s: malformed message in reply: %v", inbox, err)
		}
		msgs = append(msgs, Message{
			ID:         id,
			Body:       []byte(body),
			Deliveries: int(d),
			EnqueuedAt: time.UnixMilli(enq),
			Receipt:    FormatReceipt(id, int(d)),
		})
	}
	s.touch(ctx, inbox)
	return msgs, next, nil
}

// touch records activity on inbox in the sweeper's registry, at most twice
// per sweep interval per process.
func (s *RedisStore) touch(ctx context.Context, inbox string) {
	now := time.Now()
	s.touchMu.Lock()
	last, ok := s.touched[inbox]
	fresh := ok && now.Sub(last) < s.opts.SweepInterval/2
	if !fresh {
		s.touched[inbox] = now
	}
	s.touchMu.Unlock()
	if fresh {
		return
	}
	if err := s.c.ZAdd(ctx, s.registry, redis.Z{Score: float64(now.UnixMilli()), Member: inbox}).Err(); err != nil {
		s.log.Warn("updating the sweeper registry failed", "inbox", inbox, "err", err)
		s.touchMu.Lock()
		delete(s.touched, inbox)
		s.touchMu.Unlock()
	}
}

// Pull implements Store.
func (s *RedisStore) Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]Message, error) {
	if err := checkPull(inbox, max, wait); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrClosed
	}
	if wait <= 0 {
		msgs, _, err := s.pullOnce(ctx, inbox, max)
		return msgs, err
	}
	w := s.hub.add(inbox)
	defer s.hub.remove(inbox, w)
	end := time.Now().Add(wait)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		msgs, next, err := s.pullOnce(ctx, inbox, max)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		left := time.Until(end)
		if left <= 0 {
			return msgs, nil
		}
		d := min(left, s.opts.PollInterval)
		if next >= 0 {
			d = min(d, next+time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, ErrClosed
		case <-w.ch:
		case <-timer.C:
		}
	}
}

// ackScript removes acknowledged messages, fenced by delivery count.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: id, deliveries, id, deliveries, ... (deliveries 0 = bare id)
//	returns: number of messages removed
//
// A message is removed when it was delivered at least once, is not a dead
// letter, and (for a full receipt) its delivery count still equals the
// receipt's.
var ackScript = redis.NewScript(luaCommon + `
local removed = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  local want = tonumber(ARGV[i + 1])
  local d = tonumber(redis.call('HGET', K_DLV, id) or '0')
  if d > 0 and (want == 0 or want == d) and not redis.call('ZSCORE', K_DEAD, id) then
    drop(id)
    removed = removed + 1
  end
end
if removed > 0 then cleanup() end
return removed
`)

// Ack implements Store.
func (s *RedisStore) Ack(ctx context.Context, inbox string, receipts []string) (int, error) {
	if err := ValidateInbox(inbox); err != nil {
		return 0, err
	}
	if s.isClosed() {
		return 0, ErrClosed
	}
	rs := parseReceipts(receipts)
	if len(rs) == 0 {
		return 0, nil
	}
	args := make([]interface{}, 0, 2*len(rs))
	for _, r := range rs {
		args = append(args, r.id, r.deliveries)
	}
	n, err := ackScript.Run(ctx, s.c, s.keys(inbox), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: ack in %s: %w", inbox, err)
	}
	return n, nil
}

// statsScript reads an inbox's counters. Lapsed leases count as ready.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: none
//	returns: {ready, leased, dead, now ms, oldest enqueue ms or -1}
var statsScript = redis.NewScript(luaCommon + `
local now = nowms()
local nlease = redis.call('ZCARD', K_LEASE)
local leased = redis.call('ZCOUNT', K_LEASE, '(' .. fmt(now), '+inf')
local ready = redis.call('ZCARD', K_READY) + nlease - leased
local oldest = redis.call('ZRANGE', K_ENQ, 0, 0, 'WITHSCORES')
local o = '-1'
if #oldest > 0 then o = oldest[2] end
return {ready, leased, redis.call('ZCARD', K_DEAD), fmt(now), o}
`)

// Stats implements Store.
func (s *RedisStore) Stats(ctx context.Context, inbox string) (Stats, error) {
	if err := ValidateInbox(inbox); err != nil {
		return Stats{}, err
	}
	res, err := statsScript.Run(ctx, s.c, s.keys(inbox)).Slice()
	if err != nil {
		return Stats{}, fmt.Errorf("queue: stats of %s: %w", inbox, err)
	}
	if len(res) != 5 {
		return Stats{}, fmt.Errorf("queue: stats of %s: malformed reply %v", inbox, res)
	}
	var v [5]int64
	for i := range v {
		if v[i], err = replyInt(res[i]); err != nil {
			return Stats{}, fmt.Errorf("queue: stats of %s: %w", inbox, err)
		}
	}
	st := Stats{Ready: int(v[0]), Leased: int(v[1]), DeadLetters: int(v[2])}
	if v[4] >= 0 {
		st.OldestAge = time.Duration(max64(v[3]-v[4], 0)) * time.Millisecond
	}
	return st, nil
}

// deadLettersScript lists dead letters, oldest first.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: limit
//	returns: {id, body, deliveries, enqueued ms, id, ...}
var deadLettersScript = redis.NewScript(luaCommon + `
local ids = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call('HGET', K_BODY, ids[i]) or ''
  out[#out + 1] = tonumber(redis.call('HGET', K_DLV, ids[i]) or '0')
  out[#out + 1] = ids[i + 1]
end
return out
`)

// DeadLetters implements Store.
func (s *RedisStore) DeadLetters(ctx context.Context, inbox string, limit int) ([]Message, error) {
	if err := ValidateInbox(inbox); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", ErrInvalidArgument, limit)
	}
	res, err := deadLettersScript.Run(ctx, s.c, s.keys(inbox), limit).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", inbox, err)
	}
	if len(res)%4 != 0 {
		return nil, fmt.Errorf("queue: dead letters of %s: malformed reply", inbox)
	}
	out := make([]Message, 0, len(res)/4)
	for i := 0; i < len(res); i += 4 {
		id, _ := res[i].(string)
		body, _ := res[i+1].(string)
		d, err1 := replyInt(res[i+2])
		enq, err2 := replyInt(res[i+3])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("queue: dead letters of %s: %w", inbox, err)
		}
		out = append(out, Message{ID: id, Body: []byte(body), Deliveries: int(d),
			EnqueuedAt: time.UnixMilli(enq), Receipt: FormatReceipt(id, int(d))})
	}
	return out, nil
}

// redriveScript moves dead letters back to their place in the ready list with
// a delivery count of zero.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: wake channel, inbox name, id, id, ... (no id = every dead letter)
//	returns: number of messages moved
var redriveScript = redis.NewScript(luaCommon + `
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', K_DEAD, 0, -1) end
local moved = 0
for _, id in ipairs(ids) do
  local at = redis.call('ZSCORE', K_DEAD, id)
  if at then
    redis.call('ZREM', K_DEAD, id)
    redis.call('HDEL', K_DLV, id)
    redis.call('ZADD', K_ENQ, at, id)
    redis.call('ZADD', K_READY, id, id)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return moved
`)

// Redrive implements Store. Redriven messages do not count against Capacity
// when moved; they count afterwards like any ready message.
func (s *RedisStore) Redrive(ctx context.Context, inbox string, ids []string) (int, error) {
	if err := ValidateInbox(inbox); err != nil {
		return 0, err
	}
	args := make([]interface{}, 0, 2+len(ids))
	args = append(args, s.wakeChannel, inbox)
	for _, id := range ids {
		args = append(args, id)
	}
	n, err := redriveScript.Run(ctx, s.c, s.keys(inbox), args...).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: redrive in %s: %w", inbox, err)
	}
	return n, nil
}

// purgeScript deletes every dead letter.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: none
//	returns: number of messages deleted
var purgeScript = redis.NewScript(luaCommon + `
local ids = redis.call('ZRANGE', K_DEAD, 0, -1)
for _, id in ipairs(ids) do drop(id) end
cleanup()
return #ids
`)

// PurgeDeadLetters implements Store.
func (s *RedisStore) PurgeDeadLetters(ctx context.Context, inbox string) (int, error) {
	if err := ValidateInbox(inbox); err != nil {
		return 0, err
	}
	n, err := purgeScript.Run(ctx, s.c, s.keys(inbox)).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: purge dead letters of %s: %w", inbox, err)
	}
	return n, nil
}

// DeleteInbox implements Store.
func (s *RedisStore) DeleteInbox(ctx context.Context, inbox string) error {
	if err := ValidateInbox(inbox); err != nil {
		return err
	}
	if err := s.c.Del(ctx, s.keys(inbox)...).Err(); err != nil {
		return fmt.Errorf("queue: delete inbox %s: %w", inbox, err)
	}
	if err := s.c.ZRem(ctx, s.registry, inbox).Err(); err != nil {
		return fmt.Errorf("queue: delete inbox %s from registry: %w", inbox, err)
	}
	s.touchMu.Lock()
	delete(s.touched, inbox)
	s.touchMu.Unlock()
	return nil
}

// Ping implements Store.
func (s *RedisStore) Ping(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis ping: %w", err)
	}
	return nil
}

// Close stops the sweeper and the pub/sub connection and wakes every waiting
// Pull, which returns ErrClosed. It does not close the client.
func (s *RedisStore) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.ps.Close()
		s.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("queue: closing pub/sub: %w", err)
	}
	return nil
}

func (s *RedisStore) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// sweepScript applies retention to one inbox and deletes its counter when
// the inbox is empty.
//
//	KEYS: seq body dlv ready lease enq dead
//	ARGV: retention ms
//	returns: 1 if the inbox is now empty (no key left), else 0
var sweepScript = redis.NewScript(luaCommon + `
retain(nowms(), tonumber(ARGV[1]))
return cleanup()
`)

// sweeper runs Sweep every SweepInterval on whichever replica takes the lock.
func (s *RedisStore) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.SweepInterval*4+10*time.Second)
		go func() {
			select {
			case <-s.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		token := randomToken()
		ok, err := s.c.SetNX(ctx, s.sweepLock, token, s.opts.SweepInterval).Result()
		switch {
		case err != nil:
			s.log.Warn("sweeper lock", "err", err)
		case ok:
			if n, err := s.Sweep(ctx); err != nil && !s.isClosed() {
				s.log.Warn("sweep failed", "err", err, "inboxes_removed", n)
			}
		}
		cancel()
		s.touchMu.Lock()
		for inbox, at := range s.touched {
			if time.Since(at) > s.opts.SweepInterval {
				delete(s.touched, inbox)
			}
		}
		s.touchMu.Unlock()
	}
}

// Sweep applies retention to every inbox not pulled during the last sweep
// interval and deletes the keys of the empty ones; it returns how many
// inboxes it removed. The background sweeper calls it under a lock so one
// replica sweeps per interval; calling it directly is safe too.
func (s *RedisStore) Sweep(ctx context.Context) (int, error) {
	cutoff := strconv.FormatInt(time.Now().Add(-s.opts.SweepInterval).UnixMilli(), 10)
	removed, offset := 0, int64(0)
	for {
		inboxes, err := s.c.ZRangeByScore(ctx, s.registry, &redis.ZRangeBy{Min: "-inf", Max: cutoff, Offset: offset, Count: 256}).Result()
		if err != nil {
			return removed, fmt.Errorf("queue: sweep: reading registry: %w", err)
		}
		if len(inboxes) == 0 {
			return removed, nil
		}
		for _, inbox := range inboxes {
			if ValidateInbox(inbox) != nil {
				// Not ours to interpret; drop it from the registry.
				s.c.ZRem(ctx, s.registry, inbox)
				continue
			}
			keys := s.keys(inbox)
			empty, err := sweepScript.Run(ctx, s.c, keys, s.opts.Retention.Milliseconds()).Int()
			if err != nil {
				return removed, fmt.Errorf("queue: sweep %s: %w", inbox, err)
			}
			if empty == 0 {
				offset++
				continue
			}
			if err := s.c.ZRem(ctx, s.registry, inbox).Err(); err != nil {
				return removed, fmt.Errorf("queue: sweep: unregistering %s: %w", inbox, err)
			}
			// An Enqueue may have recreated the inbox between the script and
			// the ZREM; its own ZADD NX may have run before the ZREM. Put the
			// entry back if so.
			if n, err := s.c.Exists(ctx, keys[0]).Result(); err != nil {
				return removed, fmt.Errorf("queue: sweep: rechecking %s: %w", inbox, err)
			} else if n > 0 {
				s.c.ZAddNX(ctx, s.registry, redis.Z{Score: float64(time.Now().UnixMilli()), Member: inbox})
				offset++
				continue
			}
			removed++
		}
	}
}

func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// replyInt converts a script reply element (integer or decimal string, as
// ZSCORE may return) to int64.
func replyInt(v interface{}) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("not a number: %q", v)
		}
		return int64(f), nil
	default:
		return 0, fmt.Errorf("unexpected reply type %T", v)
	}
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// waiting reports how many Pulls of this store wait on inbox (for tests).
func (s *RedisStore) waiting(inbox string) int { return s.hub.count(inbox) }

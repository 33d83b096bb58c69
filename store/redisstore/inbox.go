package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/internal/inboxutil"
)

// InboxOptions configure a Inbox.
type InboxOptions struct {
	queue.Options
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

func (o InboxOptions) withDefaults() InboxOptions {
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

// Inbox is the Store for many broker replicas sharing one Redis (≥ 7.0)
// or Redis Cluster.
//
// # Keys
//
// Every key of inbox X lives under one hash tag, so an inbox is one Cluster
// slot and every script touches a single slot:
//
//	<prefix>ib:{X}:seq    STRING  sequence counter (FIFO position)
//	<prefix>ib:{X}:body   HASH    id → message body
//	<prefix>ib:{X}:meta   HASH    id → "<sequence>:<deliveries>:<enqueued ms>",
//	                              ":D" appended for a dead letter
//	<prefix>ib:{X}:ready  ZSET    ids ready to lease, score = sequence number
//	<prefix>ib:{X}:lease  ZSET    leased ids, score = lease deadline (server ms)
//	<prefix>ib:{X}:enq    ZSET    ready and leased ids, score = enqueue time (ms)
//	<prefix>ib:{X}:dead   ZSET    dead-lettered ids, score = enqueue time (ms)
//	<prefix>ib:{X}:ids    ZSET    ids stored by EnqueueID, score = when they
//	                              are forgotten (server ms); expires with
//	                              its newest entry, or up to 1/16 of the
//	                              dedup window later
//
// Two keys sit outside any hash tag: the registry <prefix>inboxes (ZSET of
// inbox names scored by last activity, client clock, used only by the
// sweeper) and the sweeper lock <prefix>sweep:lock. In Redis Cluster both land
// on one node, which sees one registry write per new inbox and per inbox per
// sweep interval; nothing on the hot path depends on them. Wake-ups use the
// ordinary (non-sharded) channel <prefix>wake with the inbox name as payload,
// which Cluster broadcasts to every node.
//
// Message ids are 128-bit random hex strings chosen by the client (or the
// caller's, for EnqueueID), so ids are never reused and a retried Enqueue
// (go-redis retries on network errors) is idempotent. The body is written
// with a plain HSET in the same MULTI/EXEC as the enqueue script rather than
// passed to the script: moving a 2 KB argument through Lua costs Redis 7.0
// about ten times more than the whole script. EnqueueID writes its body with
// HSETNX instead, so a repeated id never overwrites a stored body, and the
// script consults the ids key before linking the message.
//
// # Batching
//
// Concurrent Enqueue calls of one Inbox are group-committed: one flusher
// goroutine takes whatever calls are queued (up to 128 messages or 4 MiB)
// and sends them as one MULTI/EXEC holding the bodies' HSETs and one enqueue
// script call for all their inboxes (one transaction per inbox on a
// cluster, sent concurrently). The batching is self-clocking: the calls
// that arrive while a round trip is in flight go out together as soon as it
// returns. A lone call is sent at once, so batching adds no latency beyond
// at most one round trip already in flight; under load it saves the
// per-round-trip and per-script overhead that dominates Redis's CPU time (a
// round trip costs the server more than the whole script).
// Scripts pass whole batches of ids to each Redis command for the same
// reason.
//
// Every deadline and timestamp inside Redis comes from the server clock
// (TIME inside the scripts), so replicas with skewed clocks agree on leases.
// An empty inbox (no ready, leased or dead message) leaves no key behind.
//
// # Long polling
//
// No blocking Redis command is used. Enqueue publishes the inbox name on
// <prefix>wake when the inbox had nothing ready; each Inbox holds one
// pub/sub connection and wakes its local waiters of that inbox, which pull
// again. A waiter also pulls again at the earliest lease deadline of its inbox
// (when a lapsed lease makes a message available) and every PollInterval as a
// safety net. When the pub/sub connection is re-established every waiter is
// woken, since notices may have been lost while it was down.
//
// # Durability
//
// Enqueue returns after Redis executed its transaction. Whether the
// message survives a crash of Redis is Redis's persistence setting: with
// appendonly yes and appendfsync always, Redis fsyncs the AOF before it
// replies, so nothing Enqueue returned for is lost on kill -9 or power loss
// (checked by the conformance suite with a private redis-server); with
// appendfsync everysec (Redis's default for AOF) Redis still write()s the AOF
// before it replies, so a killed redis-server loses nothing, but an OS crash
// or power cut can lose up to about one second of acknowledged enqueues, acks
// and leases (and a kill during an fsync stall of a slow disk, when Redis
// postpones its writes, up to about two); with RDB snapshots only,
// everything since the last snapshot. A lost lease or ack only causes a
// redelivery, never a loss. Leases survive a restart of Redis: their deadlines
// are server timestamps, so leased messages come back once the deadline
// passes. With replication, Redis replicates asynchronously; a failover may
// lose the last writes unless WAIT/WAITAOF is used, which this store does not.
//
// # Redis Cluster
//
// Pass a *redis.ClusterClient. TestRedisClusterConformance starts three
// redis-server processes with cluster-enabled yes, joins them with
// redis-cli --cluster create and runs the whole conformance suite on them.
// To run the suite against an existing cluster instead, set
// REDIS_CLUSTER_ADDRS=host:port,host:port,... (TestRedisConformance then
// uses it in place of REDIS_URL).
type Inbox struct {
	c    redis.UniversalClient
	opts InboxOptions
	log  *slog.Logger

	wakeChannel string
	registry    string
	sweepLock   string

	hub    *inboxutil.Hub
	ps     *redis.PubSub
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	enqueueCh chan []*enqueueReq
	stopped   chan struct{} // closed once the flushers have exited

	touchMu sync.Mutex
	touched map[string]time.Time // inbox → last registry write by this process
}

var (
	_ queue.Store           = (*Inbox)(nil)
	_ queue.DeadLetterAdmin = (*Inbox)(nil)
)

// NewInbox returns a store using client, which it does not close. It
// checks the server version, subscribes to the wake-up channel (waiting for
// the subscription to be confirmed) and starts the sweeper.
func NewInbox(client redis.UniversalClient, opts InboxOptions) (*Inbox, error) {
	opts = opts.withDefaults()
	if client == nil {
		return nil, fmt.Errorf("queue: NewInbox: nil client")
	}
	s := &Inbox{
		c:           client,
		opts:        opts,
		log:         opts.Logger.With("component", "queue.redis"),
		wakeChannel: inboxKeys{opts.Prefix}.wake(),
		registry:    inboxKeys{opts.Prefix}.registry(),
		sweepLock:   inboxKeys{opts.Prefix}.sweepLock(),
		hub:         inboxutil.NewHub(),
		closed:      make(chan struct{}),
		touched:     make(map[string]time.Time),
		enqueueCh:   make(chan []*enqueueReq, enqueueQueueSize),
		stopped:     make(chan struct{}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("queue: redis ping: %w", err)
	}
	if err := checkRedisVersion(ctx, client); err != nil {
		return nil, err
	}
	for _, sc := range allScripts {
		if err := sc.Load(ctx, client).Err(); err != nil {
			return nil, fmt.Errorf("queue: loading scripts into redis: %w", err)
		}
	}
	s.ps = client.Subscribe(ctx, s.wakeChannel)
	if _, err := s.ps.Receive(ctx); err != nil {
		_ = s.ps.Close()
		return nil, fmt.Errorf("queue: redis subscribe %s: %w", s.wakeChannel, err)
	}
	ch := s.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	s.wg.Add(2 + enqueueFlushers)
	go s.listen(ch)
	go s.sweeper()
	for range enqueueFlushers {
		go s.flusher()
	}
	return s, nil
}

// listen dispatches wake-up notices to local waiters. go-redis reconnects and
// resubscribes by itself; the confirmation of that subscription arrives here
// as a *redis.Subscription, upon which every waiter is woken.
func (s *Inbox) listen(ch <-chan interface{}) {
	defer s.wg.Done()
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			s.hub.Wake(m.Payload)
		case *redis.Subscription:
			s.log.Debug("wake-up channel (re)subscribed", "channel", m.Channel)
			s.hub.WakeAll()
		}
	}
}

// keysPerInbox is the number of KEYS each inbox contributes to a script.
const keysPerInbox = inboxKeysPerInbox

// keys returns the KEYS of every inbox script (keys.go).
func (s *Inbox) keys(inbox string) []string { return inboxKeys{s.opts.Prefix}.inbox(inbox) }

// luaCommon is prepended to every inbox script. All scripts take the same
// eight KEYS per inbox: seq body meta ready lease enq dead ids; use(i) selects
// the i-th inbox (0-based) of a multi-inbox script. Redis commands get whole
// batches of ids (unpack) because each redis.call costs Redis 7.0 several
// microseconds. Numbers are formatted with %d because Lua's default number
// formatting (%.14g) would round them.
const luaCommon = `
local K_SEQ, K_BODY, K_META, K_READY, K_LEASE, K_ENQ, K_DEAD, K_IDS
local function use(i)
  local b = i * 8
  K_SEQ, K_BODY, K_META, K_READY, K_LEASE, K_ENQ, K_DEAD, K_IDS =
    KEYS[b + 1], KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5], KEYS[b + 6], KEYS[b + 7], KEYS[b + 8]
end
use(0)
local function fmt(n) return string.format('%d', n) end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- meta of a message is "<seq>:<deliveries>:<enqueued ms>", with ":D"
-- appended while it is a dead letter.
local function parsemeta(m)
  local seq, d, enq, dead = string.match(m, '^(%d+):(%d+):(%d+)(:?D?)$')
  return seq, tonumber(d), enq, dead == ':D'
end
-- droplive removes the ready or leased messages ids (a non-empty list).
local function droplive(ids)
  redis.call('HDEL', K_BODY, unpack(ids))
  redis.call('HDEL', K_META, unpack(ids))
  redis.call('ZREM', K_READY, unpack(ids))
  redis.call('ZREM', K_LEASE, unpack(ids))
  redis.call('ZREM', K_ENQ, unpack(ids))
end
-- dropall removes the messages ids (a non-empty list), dead or alive.
local function dropall(ids)
  droplive(ids)
  redis.call('ZREM', K_DEAD, unpack(ids))
end
-- deadletterall moves ready or leased messages ids (non-empty) to the dead
-- letters, keeping their enqueue time as score.
-- metas[i] is the meta of ids[i].
local function deadletterall(ids, metas)
  local args, newmeta = {}, {}
  for i, id in ipairs(ids) do
    local seq, d, enq = parsemeta(metas[i])
    args[#args + 1] = enq
    args[#args + 1] = id
    newmeta[#newmeta + 1] = id
    newmeta[#newmeta + 1] = seq .. ':' .. d .. ':' .. enq .. ':D'
  end
  redis.call('ZREM', K_READY, unpack(ids))
  redis.call('ZREM', K_LEASE, unpack(ids))
  redis.call('ZREM', K_ENQ, unpack(ids))
  redis.call('ZADD', K_DEAD, unpack(args))
  redis.call('HSET', K_META, unpack(newmeta))
end
-- retain drops up to 1000 messages per set enqueued before now - retention.
local function retain(now, retention)
  local cutoff = '(' .. fmt(now - retention)
  for _, key in ipairs({K_ENQ, K_DEAD}) do
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0, 1000)
    if #ids > 0 then dropall(ids) end
  end
end
-- cleanup deletes the keys of an inbox that holds no message: the counter,
-- and bodies orphaned by an enqueue whose script failed after its HSET.
local function cleanup()
  if redis.call('HLEN', K_META) == 0 then
    redis.call('DEL', K_SEQ, K_BODY)
    return 1
  end
  return 0
end
`

// enqueueScript links messages, whose bodies the same MULTI/EXEC has just
// written with HSET, into their inboxes. One call may serve several inboxes
// (one Redis), or one inbox (Redis Cluster, where an inbox is a slot).
//
//	KEYS: seq body meta ready lease enq dead ids, for each inbox
//	ARGV: capacity, retention ms, wake channel, dedup window ms, dedup
//	      capacity, then per inbox: inbox name, k, flags, id_1 … id_k
//	      (flags: k characters, '1' where the id came from EnqueueID)
//	returns: per inbox: created (1 if the inbox was created), then k
//	         statuses (0 stored, 1 already in the inbox, 2 inbox full: the
//	         body was removed again, 3 remembered by EnqueueID: the body
//	         was removed again)
//
// It publishes the inbox name on the wake channel when the inbox had no
// ready message, which is when a Pull may be waiting.
var enqueueScript = redis.NewScript(luaCommon + `
local capacity, retention, channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local window, dcap = tonumber(ARGV[4]), tonumber(ARGV[5])
-- slack: how much longer than its newest entry the ids key may live, so
-- that its TTL is renewed at most once per slack rather than every batch.
local slack = math.max(math.floor(window / 16), 1)
-- now is read from the server clock the first time it is needed (a batch
-- of repeats needs no clock).
local now
local function clock()
  if not now then now = nowms() end
  return now
end
local out = {}
local a = 6
for ib = 0, #KEYS / 8 - 1 do
  use(ib)
  local name, k, flags = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local ids = {}
  for i = 1, k do ids[i] = ARGV[a + 2 + i] end
  a = a + 3 + k
  local present = redis.call('HMGET', K_META, unpack(ids))
  local keyed, remembered, ask, at = {}, {}, {}, {}
  for i = 1, k do
    keyed[i] = string.byte(flags, i) == 49
    if keyed[i] and not present[i] then
      ask[#ask + 1] = ids[i]
      at[#at + 1] = i
    end
  end
  if #ask > 0 then
    local exp = redis.call('ZMSCORE', K_IDS, unpack(ask))
    for j, e in ipairs(exp) do
      if e and tonumber(e) > clock() then remembered[at[j]] = true end
    end
  end
  local nready = redis.call('ZCARD', K_READY)
  local live = nready + redis.call('ZCARD', K_LEASE)
  local nfresh = 0
  for i = 1, k do if not present[i] and not remembered[i] then nfresh = nfresh + 1 end end
  if live + nfresh > capacity then
    retain(clock(), retention)
    nready = redis.call('ZCARD', K_READY)
    live = nready + redis.call('ZCARD', K_LEASE)
  end
  local status, accepted, rejected, remember, linked = {}, {}, {}, {}, {}
  for i = 1, k do
    if present[i] or linked[ids[i]] then
      status[i] = 1
    elseif remembered[i] then
      status[i] = 3
      rejected[#rejected + 1] = ids[i]
    elseif live < capacity then
      status[i] = 0
      live = live + 1
      accepted[#accepted + 1] = ids[i]
      linked[ids[i]] = true
      if keyed[i] then
        remember[#remember + 1] = fmt(clock() + window)
        remember[#remember + 1] = ids[i]
      end
    else
      status[i] = 2
      rejected[#rejected + 1] = ids[i]
    end
  end
  if #rejected > 0 then redis.call('HDEL', K_BODY, unpack(rejected)) end
  local created = 0
  if #accepted > 0 then
    local last = redis.call('INCRBY', K_SEQ, #accepted)
    if last == #accepted then created = 1 end
    local meta, ready, enq = {}, {}, {}
    local t = fmt(clock())
    for i, id in ipairs(accepted) do
      local seq = fmt(last - #accepted + i)
      meta[#meta + 1] = id
      meta[#meta + 1] = seq .. ':0:' .. t
      ready[#ready + 1] = seq
      ready[#ready + 1] = id
      enq[#enq + 1] = t
      enq[#enq + 1] = id
    end
    redis.call('HSET', K_META, unpack(meta))
    redis.call('ZADD', K_READY, unpack(ready))
    redis.call('ZADD', K_ENQ, unpack(enq))
    if #remember > 0 then
      redis.call('ZADD', K_IDS, unpack(remember))
      -- Keep the newest dcap ids: removes the lowest ranks beyond dcap, and
      -- nothing (no ZCARD needed) while there are fewer.
      redis.call('ZREMRANGEBYRANK', K_IDS, 0, -dcap - 1)
      -- The key must outlive its newest entry (now + window). Renew its TTL
      -- (to window + slack) only when it would not, and drop the forgotten
      -- entries then: lookups ignore them anyway (score <= now), and the
      -- rank trim bounds them, so between renewals they only take memory.
      if redis.call('PTTL', K_IDS) < window then
        redis.call('ZREMRANGEBYSCORE', K_IDS, '-inf', fmt(now))
        redis.call('PEXPIRE', K_IDS, window + slack)
      end
    end
    if nready == 0 then redis.call('PUBLISH', channel, name) end
  else
    cleanup()
  end
  out[#out + 1] = created
  for i = 1, k do out[#out + 1] = status[i] end
end
return out
`)

// enqueueBatch is a group of concurrent Enqueue calls sent in one round trip.
type enqueueReq struct {
	ctx     context.Context
	inbox   string
	body    []byte
	id      string
	keyed   bool // from EnqueueID: HSETNX the body, remember the id
	channel string
	stored  bool // set by the flusher: a new message was linked
	err     error
	done    chan struct{}
}

const (
	// enqueueFlushers is the number of batches in flight at once. One makes
	// the batching self-clocking (a group commit): more flushers in flight
	// only split the same arrivals into more, smaller round trips.
	enqueueFlushers  = 1
	enqueueMaxBatch  = 128     // messages per batch
	enqueueMaxBytes  = 4 << 20 // body bytes per batch
	enqueueQueueSize = 1024
)

// Enqueue implements queue.Store. Concurrent calls are grouped: the flusher
// takes whatever calls are queued (up to 128 messages or 4 MiB) and sends
// them in one round trip (MULTI, HSET bodies, EVALSHA enqueue, EXEC). A lone
// call is sent at once, without waiting for company.
func (s *Inbox) Enqueue(ctx context.Context, inbox string, body []byte) (string, error) {
	if err := inboxutil.CheckEnqueue(inbox, body); err != nil {
		return "", err
	}
	if s.isClosed() {
		return "", queue.ErrClosed
	}
	r, err := s.enqueue(ctx, inbox, inboxutil.NewID(), false, body, s.wakeChannel)
	if err != nil {
		return "", err
	}
	return r.id, nil
}

// EnqueueID implements queue.Store.
func (s *Inbox) EnqueueID(ctx context.Context, inbox, id string, body []byte) (bool, error) {
	if err := inboxutil.CheckEnqueue(inbox, body); err != nil {
		return false, err
	}
	if err := queue.ValidateID(id); err != nil {
		return false, err
	}
	if s.isClosed() {
		return false, queue.ErrClosed
	}
	r, err := s.enqueue(ctx, inbox, id, true, body, s.wakeChannel)
	if err != nil {
		return false, err
	}
	return r.stored, nil
}

// enqueue queues one message for a flusher; channel is where wake-ups go.
func (s *Inbox) enqueue(ctx context.Context, inbox, id string, keyed bool, body []byte, channel string) (*enqueueReq, error) {
	r := s.newReq(ctx, inbox, id, keyed, body, channel)
	if err := s.submit(ctx, []*enqueueReq{r}); err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	return r, nil
}

// newReq builds one queued message. The body is copied: a caller whose ctx
// ends returns at once and may reuse its buffer while a flusher is still
// sending it.
func (s *Inbox) newReq(ctx context.Context, inbox, id string, keyed bool, body []byte, channel string) *enqueueReq {
	return &enqueueReq{ctx: ctx, inbox: inbox, body: bytes.Clone(body), id: id, keyed: keyed, channel: channel, done: make(chan struct{})}
}

// submit hands reqs to a flusher as one bundle (they go out in the same
// round trip) and waits until all are done. An error means the outcome of
// every req not yet done is unknown.
func (s *Inbox) submit(ctx context.Context, reqs []*enqueueReq) error {
	select {
	case s.enqueueCh <- reqs:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return queue.ErrClosed
	}
	for _, r := range reqs {
		select {
		case <-r.done:
		case <-ctx.Done():
			// The message may still be stored; like any call whose reply
			// is lost, the caller cannot know.
			return ctx.Err()
		case <-s.stopped:
			// Queued after the flushers' final drain.
			select {
			case <-r.done:
			default:
				return queue.ErrClosed
			}
		}
	}
	return nil
}

// flusher sends queued Enqueue calls in batches until the store closes.
// A bundle (one EnqueueIDs call) is never split across batches.
func (s *Inbox) flusher() {
	defer s.wg.Done()
	for {
		var first []*enqueueReq
		select {
		case first = <-s.enqueueCh:
		case <-s.closed:
			s.drainEnqueues()
			return
		}
		batch := append([]*enqueueReq(nil), first...)
		size := 0
		for _, r := range first {
			size += len(r.body)
		}
	fill:
		for len(batch) < enqueueMaxBatch && size < enqueueMaxBytes {
			select {
			case b := <-s.enqueueCh:
				for _, r := range b {
					batch = append(batch, r)
					size += len(r.body)
				}
			default:
				break fill
			}
		}
		s.flush(batch)
	}
}

// drainEnqueues fails the calls still queued at Close.
func (s *Inbox) drainEnqueues() {
	for {
		select {
		case b := <-s.enqueueCh:
			for _, r := range b {
				r.err = queue.ErrClosed
				close(r.done)
			}
		default:
			return
		}
	}
}

// flush stores one batch and completes its calls.
func (s *Inbox) flush(batch []*enqueueReq) {
	// Drop calls whose caller already gave up.
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// Group by inbox (and wake channel, which only tests vary), keeping
	// arrival order within a group.
	type group struct {
		inbox, channel string
		reqs           []*enqueueReq
	}
	var groups []*group
	index := map[[2]string]*group{}
	for _, r := range live {
		k := [2]string{r.inbox, r.channel}
		g := index[k]
		if g == nil {
			g = &group{inbox: r.inbox, channel: r.channel}
			index[k] = g
			groups = append(groups, g)
		}
		g.reqs = append(g.reqs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One script call per channel for one Redis; one per inbox (slot) for a
	// cluster.
	_, cluster := s.c.(*redis.ClusterClient)
	var calls [][]*group
	if cluster {
		for _, g := range groups {
			calls = append(calls, []*group{g})
		}
	} else {
		byChannel := map[string]int{}
		for _, g := range groups {
			i, ok := byChannel[g.channel]
			if !ok {
				i = len(calls)
				byChannel[g.channel] = i
				calls = append(calls, nil)
			}
			calls[i] = append(calls[i], g)
		}
	}
	// txs are the MULTI/EXEC transactions to send: all calls in one for a
	// single Redis; one per call (a slot) for a cluster, where a transaction
	// cannot span slots.
	txs := [][]int{}
	if cluster {
		for ci := range calls {
			txs = append(txs, []int{ci})
		}
	} else {
		all := make([]int, len(calls))
		for ci := range all {
			all[ci] = ci
		}
		txs = append(txs, all)
	}
	cmds := make([]*redis.Cmd, len(calls))
	errs := make([]error, len(calls))
	runTx := func(tx []int) {
		send := func() error {
			_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, ci := range tx {
					call := calls[ci]
					keys := make([]string, 0, keysPerInbox*len(call))
					args := []interface{}{s.opts.Capacity, s.opts.Retention.Milliseconds(), call[0].channel,
						s.opts.DedupWindow.Milliseconds(), s.opts.DedupCapacity}
					for _, g := range call {
						ks := s.keys(g.inbox)
						keys = append(keys, ks...)
						fields := make([]interface{}, 0, 2*len(g.reqs))
						flags := make([]byte, len(g.reqs))
						for i, r := range g.reqs {
							flags[i] = '0'
							if r.keyed {
								// Never overwrite the body of a message
								// already stored under this id.
								flags[i] = '1'
								p.HSetNX(ctx, ks[1], r.id, r.body)
							} else {
								fields = append(fields, r.id, r.body)
							}
						}
						args = append(args, g.inbox, len(g.reqs), string(flags))
						for _, r := range g.reqs {
							args = append(args, r.id)
						}
						if len(fields) > 0 {
							p.HSet(ctx, ks[1], fields...)
						}
					}
					cmds[ci] = p.EvalSha(ctx, enqueueScript.Hash(), keys, args...)
				}
				return nil
			})
			return err
		}
		err := send()
		if isNoScript(err) {
			// Script cache flushed (or a new server): load and retry. The
			// retry's HSETs rewrite the same fields; nothing is orphaned.
			if err = enqueueScript.Load(ctx, s.c).Err(); err == nil {
				err = send()
			}
		}
		for _, ci := range tx {
			errs[ci] = err
		}
	}
	if len(txs) == 1 {
		runTx(txs[0])
	} else {
		var wg sync.WaitGroup
		for _, tx := range txs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runTx(tx)
			}()
		}
		wg.Wait()
	}
	var created []redis.Z
	for ci, call := range calls {
		var res []interface{}
		cerr := errs[ci]
		if cerr == nil {
			res, cerr = cmds[ci].Slice()
		}
		pos := 0
		for _, g := range call {
			var gerr error
			switch {
			case cerr != nil:
				gerr = fmt.Errorf("queue: enqueue into %s: %w", g.inbox, cerr)
			case pos+1+len(g.reqs) > len(res):
				gerr = fmt.Errorf("queue: enqueue into %s: short reply", g.inbox)
			default:
				if c, _ := res[pos].(int64); c == 1 {
					created = append(created, redis.Z{Score: float64(time.Now().UnixMilli()), Member: g.inbox})
				}
				pos++
			}
			for _, r := range g.reqs {
				r.err = gerr
				if gerr == nil {
					st, _ := res[pos].(int64)
					switch st {
					case 0:
						r.stored = true
					case 2:
						r.err = fmt.Errorf("%w: %s holds %d messages", queue.ErrInboxFull, g.inbox, s.opts.Capacity)
					}
					pos++
				}
			}
		}
	}
	if len(created) > 0 {
		// New inboxes: make them known to the sweeper. NX keeps the score
		// of an entry that survived an earlier incarnation of the inbox.
		if err := s.c.ZAddNX(ctx, s.registry, created...).Err(); err != nil {
			s.log.Warn("registering inboxes for the sweeper failed; they are registered on their next pull", "err", err)
		}
	}
	for _, r := range live {
		close(r.done)
	}
}

func isNoScript(err error) bool {
	return err != nil && strings.Contains(err.Error(), "NOSCRIPT")
}

// pullScript applies retention, reclaims lapsed leases (dead-lettering
// messages that used up their deliveries) and leases up to n ready messages.
//
//	KEYS: seq body meta ready lease enq dead
//	ARGV: n, lease ms, max deliveries, retention ms, byte budget
//	returns: {now ms, earliest lease deadline ms or -1,
//	          id, body, deliveries, enqueued ms, id, body, ...}
//
// It stops leasing once the bodies returned reach the byte budget (always
// returning at least one message), putting the rest back in place.
var pullScript = redis.NewScript(luaCommon + `
local now = nowms()
local want, leasems, maxd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, bytes = tonumber(ARGV[5]), 0
retain(now, tonumber(ARGV[4]))
-- The earliest lease deadline tells both whether any lease lapsed and, when
-- none did, the deadline to report: one call where a search for lapsed
-- leases plus a second look at the deadline at the end would take two.
local first = redis.call('ZRANGE', K_LEASE, 0, 0, 'WITHSCORES')[2]
local lapsed = {}
if first and tonumber(first) <= now then
  lapsed = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', fmt(now), 'LIMIT', 0, 1000)
  first = nil -- unknown after the reclaim; looked up at the end if needed
end
if #lapsed > 0 then
  local metas = redis.call('HMGET', K_META, unpack(lapsed))
  local back, dead, deadmeta = {}, {}, {}
  for i, id in ipairs(lapsed) do
    if metas[i] then
      local seq, d = parsemeta(metas[i])
      if d >= maxd then
        dead[#dead + 1] = id
        deadmeta[#deadmeta + 1] = metas[i]
      else
        back[#back + 1] = seq
        back[#back + 1] = id
      end
    end
  end
  redis.call('ZREM', K_LEASE, unpack(lapsed))
  if #back > 0 then redis.call('ZADD', K_READY, unpack(back)) end
  if #dead > 0 then deadletterall(dead, deadmeta) end
end
local out = {fmt(now), '-1'}
local got = 0
local deadline = fmt(now + leasems)
while got < want and bytes < budget do
  local popped = redis.call('ZPOPMIN', K_READY, want - got)
  if #popped == 0 then break end
  local ids, scores = {}, {}
  for i = 1, #popped, 2 do
    ids[#ids + 1] = popped[i]
    scores[#scores + 1] = popped[i + 1]
  end
  local metas = redis.call('HMGET', K_META, unpack(ids))
  local bodies = redis.call('HMGET', K_BODY, unpack(ids))
  local leases, newmeta, dead, deadmeta, broken, back = {}, {}, {}, {}, {}, {}
  for i, id in ipairs(ids) do
    if got > 0 and bytes >= budget then
      back[#back + 1] = scores[i]
      back[#back + 1] = id
    elseif not metas[i] or not bodies[i] then
      broken[#broken + 1] = id
    else
      local seq, d, enq = parsemeta(metas[i])
      if d >= maxd then
        dead[#dead + 1] = id
        deadmeta[#deadmeta + 1] = metas[i]
      else
        d = d + 1
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id
        newmeta[#newmeta + 1] = id
        newmeta[#newmeta + 1] = seq .. ':' .. d .. ':' .. enq
        out[#out + 1] = id
        out[#out + 1] = bodies[i]
        out[#out + 1] = d
        out[#out + 1] = enq
        got = got + 1
        bytes = bytes + #bodies[i]
      end
    end
  end
  if #back > 0 then redis.call('ZADD', K_READY, unpack(back)) end
  if #leases > 0 then
    redis.call('ZADD', K_LEASE, unpack(leases))
    redis.call('HSET', K_META, unpack(newmeta))
  end
  if #dead > 0 then deadletterall(dead, deadmeta) end
  if #broken > 0 then dropall(broken) end
end
if not first and #lapsed > 0 then
  first = redis.call('ZRANGE', K_LEASE, 0, 0, 'WITHSCORES')[2]
elseif got > 0 and (not first or tonumber(first) > tonumber(deadline)) then
  -- This pull's leases end at deadline; first, if any, predates them.
  first = deadline
end
if first then out[2] = first end
if got == 0 then cleanup() end
return out
`)

// pullOnce runs the pull script. next is the time until the inbox's earliest
// lease deadline by the server clock, or -1 when nothing is leased.
func (s *Inbox) pullOnce(ctx context.Context, inbox string, max int) (msgs []queue.Message, next time.Duration, err error) {
	res, err := pullScript.Run(ctx, s.c, s.keys(inbox), max, s.opts.Lease.Milliseconds(),
		s.opts.MaxDeliveries, s.opts.Retention.Milliseconds(), queue.MaxPullBytes).Slice()
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
	msgs = make([]queue.Message, 0, (len(res)-2)/4)
	for i := 2; i < len(res); i += 4 {
		id, _ := res[i].(string)
		body, _ := res[i+1].(string)
		d, err1 := replyInt(res[i+2])
		enq, err2 := replyInt(res[i+3])
		if err := errors.Join(err1, err2); err != nil || id == "" {
			return nil, 0, fmt.Errorf("queue: pull from %s: malformed message in reply: %v", inbox, err)
		}
		msgs = append(msgs, queue.Message{
			ID:         id,
			Body:       []byte(body),
			Deliveries: int(d),
			EnqueuedAt: time.UnixMilli(enq),
			Receipt:    queue.FormatReceipt(id, int(d)),
		})
	}
	s.touch(ctx, inbox)
	return msgs, next, nil
}

// touch records activity on inbox in the sweeper's registry, at most twice
// per sweep interval per process.
func (s *Inbox) touch(ctx context.Context, inbox string) {
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

// waitRetryInterval is how soon a waiting Pull retries after Redis failed
// under it.
const waitRetryInterval = 100 * time.Millisecond

// Pull implements queue.Store. An error when the pull starts is returned at once;
// one that happens while it waits is retried until the wait ends.
func (s *Inbox) Pull(ctx context.Context, inbox string, max int, wait time.Duration) ([]queue.Message, error) {
	if err := inboxutil.CheckPull(inbox, max, wait); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, queue.ErrClosed
	}
	if wait <= 0 {
		msgs, _, err := s.pullOnce(ctx, inbox, max)
		return msgs, err
	}
	w := s.hub.Add(inbox)
	defer s.hub.Remove(inbox, w)
	end := time.Now().Add(wait)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for first := true; ; first = false {
		msgs, next, err := s.pullOnce(ctx, inbox, max)
		left := time.Until(end)
		switch {
		case err != nil && (first || left <= 0 || ctx.Err() != nil || s.isClosed()):
			// An outage when the pull starts is answered at once (the
			// broker says 503, the bridge backs off); so is one that
			// outlasts the wait.
			return nil, err
		case err != nil:
			// Redis went away while this pull was waiting (a restart, a
			// failover): keep waiting and retry, so the waiter is served
			// as soon as Redis is back.
			next = waitRetryInterval
		case len(msgs) > 0:
			return msgs, nil
		case left <= 0:
			return msgs, nil
		}
		w.Arm()
		d := min(left, s.opts.PollInterval)
		if next >= 0 {
			d = min(d, next+time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, queue.ErrClosed
		case <-w.C:
		case <-timer.C:
		}
	}
}

// ackScript removes acknowledged messages, fenced by delivery count.
//
//	KEYS: seq body meta ready lease enq dead
//	ARGV: id, deliveries, id, deliveries, ... (deliveries 0 = bare id)
//	returns: number of messages removed
//
// A message is removed when it was delivered at least once, is not a dead
// letter, and (for a full receipt) its delivery count still equals the
// receipt's.
var ackScript = redis.NewScript(luaCommon + `
local ids, want = {}, {}
for i = 1, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  want[#want + 1] = tonumber(ARGV[i + 1])
end
local metas = redis.call('HMGET', K_META, unpack(ids))
local del, seen = {}, {}
for i, id in ipairs(ids) do
  if metas[i] and not seen[id] then
    local _, d, _, dead = parsemeta(metas[i])
    if d and d > 0 and not dead and (want[i] == 0 or want[i] == d) then
      seen[id] = true
      del[#del + 1] = id
    end
  end
end
if #del > 0 then
  redis.call('HDEL', K_BODY, unpack(del))
  redis.call('HDEL', K_META, unpack(del))
  -- A delivered message is leased, or ready again after its lease lapsed:
  -- look in the ready list only for those the lease set did not hold.
  if redis.call('ZREM', K_LEASE, unpack(del)) < #del then
    redis.call('ZREM', K_READY, unpack(del))
  end
  redis.call('ZREM', K_ENQ, unpack(del))
  cleanup()
end
return #del
`)

// Ack implements queue.Store.
func (s *Inbox) Ack(ctx context.Context, inbox string, receipts []string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	if s.isClosed() {
		return 0, queue.ErrClosed
	}
	rs := inboxutil.ParseReceipts(receipts)
	if len(rs) == 0 {
		return 0, nil
	}
	total := 0
	for len(rs) > 0 {
		chunk := rs[:min(len(rs), 1000)] // keep unpack() within Lua's stack
		rs = rs[len(chunk):]
		args := make([]interface{}, 0, 2*len(chunk))
		for _, r := range chunk {
			args = append(args, r.ID, r.Deliveries)
		}
		n, err := ackScript.Run(ctx, s.c, s.keys(inbox), args...).Int()
		if err != nil {
			return total, fmt.Errorf("queue: ack in %s: %w", inbox, err)
		}
		total += n
	}
	return total, nil
}

// statsScript reads an inbox's counters. Lapsed leases count as ready.
//
//	KEYS: seq body meta ready lease enq dead
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

// Stats implements queue.Store.
func (s *Inbox) Stats(ctx context.Context, inbox string) (queue.Stats, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return queue.Stats{}, err
	}
	res, err := statsScript.Run(ctx, s.c, s.keys(inbox)).Slice()
	if err != nil {
		return queue.Stats{}, fmt.Errorf("queue: stats of %s: %w", inbox, err)
	}
	if len(res) != 5 {
		return queue.Stats{}, fmt.Errorf("queue: stats of %s: malformed reply %v", inbox, res)
	}
	var v [5]int64
	for i := range v {
		if v[i], err = replyInt(res[i]); err != nil {
			return queue.Stats{}, fmt.Errorf("queue: stats of %s: %w", inbox, err)
		}
	}
	st := queue.Stats{Ready: int(v[0]), Leased: int(v[1]), DeadLetters: int(v[2])}
	if v[4] >= 0 {
		st.OldestAge = time.Duration(max64(v[3]-v[4], 0)) * time.Millisecond
	}
	return st, nil
}

// deadLettersScript lists dead letters, oldest first.
//
//	KEYS: seq body meta ready lease enq dead
//	ARGV: limit
//	returns: {id, body, deliveries, enqueued ms, id, ...}
var deadLettersScript = redis.NewScript(luaCommon + `
local ids = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #ids, 2 do
  local _, d = parsemeta(redis.call('HGET', K_META, ids[i]) or '0:0:0')
  out[#out + 1] = ids[i]
  out[#out + 1] = redis.call('HGET', K_BODY, ids[i]) or ''
  out[#out + 1] = d or 0
  out[#out + 1] = ids[i + 1]
end
return out
`)

// DeadLetters implements queue.Store.
func (s *Inbox) DeadLetters(ctx context.Context, inbox string, limit int) ([]queue.Message, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, fmt.Errorf("%w: limit %d", queue.ErrInvalidArgument, limit)
	}
	res, err := deadLettersScript.Run(ctx, s.c, s.keys(inbox), limit).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: dead letters of %s: %w", inbox, err)
	}
	if len(res)%4 != 0 {
		return nil, fmt.Errorf("queue: dead letters of %s: malformed reply", inbox)
	}
	out := make([]queue.Message, 0, len(res)/4)
	for i := 0; i < len(res); i += 4 {
		id, _ := res[i].(string)
		body, _ := res[i+1].(string)
		d, err1 := replyInt(res[i+2])
		enq, err2 := replyInt(res[i+3])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("queue: dead letters of %s: %w", inbox, err)
		}
		out = append(out, queue.Message{ID: id, Body: []byte(body), Deliveries: int(d),
			EnqueuedAt: time.UnixMilli(enq), Receipt: queue.FormatReceipt(id, int(d))})
	}
	return out, nil
}

// redriveScript moves dead letters back to their place in the ready list with
// a delivery count of zero.
//
//	KEYS: seq body meta ready lease enq dead
//	ARGV: wake channel, inbox name, id, id, ... (no id = every dead letter)
//	returns: number of messages moved
var redriveScript = redis.NewScript(luaCommon + `
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then ids = redis.call('ZRANGE', K_DEAD, 0, 999) end
if #ids == 0 then return 0 end
local at = redis.call('ZMSCORE', K_DEAD, unpack(ids))
local metas = redis.call('HMGET', K_META, unpack(ids))
local moved, enqargs, ready, meta, seen = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  if at[i] and metas[i] and not seen[id] then
    seen[id] = true
    local seq, _, enq = parsemeta(metas[i])
    moved[#moved + 1] = id
    enqargs[#enqargs + 1] = at[i]
    enqargs[#enqargs + 1] = id
    ready[#ready + 1] = seq
    ready[#ready + 1] = id
    meta[#meta + 1] = id
    meta[#meta + 1] = seq .. ':0:' .. enq
  end
end
if #moved == 0 then return 0 end
redis.call('ZREM', K_DEAD, unpack(moved))
redis.call('ZADD', K_ENQ, unpack(enqargs))
redis.call('ZADD', K_READY, unpack(ready))
redis.call('HSET', K_META, unpack(meta))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return #moved
`)

// Redrive implements queue.Store. Redriven messages do not count against Capacity
// when moved; they count afterwards like any ready message.
func (s *Inbox) Redrive(ctx context.Context, inbox string, ids []string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	total := 0
	for {
		chunk := ids[:min(len(ids), 1000)]
		ids = ids[len(chunk):]
		args := make([]interface{}, 0, 2+len(chunk))
		args = append(args, s.wakeChannel, inbox)
		for _, id := range chunk {
			args = append(args, id)
		}
		n, err := redriveScript.Run(ctx, s.c, s.keys(inbox), args...).Int()
		if err != nil {
			return total, fmt.Errorf("queue: redrive in %s: %w", inbox, err)
		}
		total += n
		// An empty list means "all": repeat until a round moves nothing.
		if (len(chunk) == 0 && n == 0) || (len(chunk) > 0 && len(ids) == 0) {
			return total, nil
		}
	}
}

// purgeScript deletes up to 1000 dead letters.
//
//	KEYS: seq body meta ready lease enq dead
//	ARGV: none
//	returns: number of messages deleted
var purgeScript = redis.NewScript(luaCommon + `
local ids = redis.call('ZRANGE', K_DEAD, 0, 999)
if #ids > 0 then dropall(ids) end
cleanup()
return #ids
`)

// PurgeDeadLetters implements queue.Store.
func (s *Inbox) PurgeDeadLetters(ctx context.Context, inbox string) (int, error) {
	if err := queue.ValidateInbox(inbox); err != nil {
		return 0, err
	}
	total := 0
	for {
		n, err := purgeScript.Run(ctx, s.c, s.keys(inbox)).Int()
		if err != nil {
			return total, fmt.Errorf("queue: purge dead letters of %s: %w", inbox, err)
		}
		total += n
		if n == 0 {
			return total, nil
		}
	}
}

// DeleteInbox implements queue.Store.
func (s *Inbox) DeleteInbox(ctx context.Context, inbox string) error {
	if err := queue.ValidateInbox(inbox); err != nil {
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

// Ping implements queue.Store.
func (s *Inbox) Ping(ctx context.Context) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: redis ping: %w", err)
	}
	return nil
}

// Close stops the sweeper and the pub/sub connection and wakes every waiting
// Pull, which returns ErrClosed. It does not close the client.
func (s *Inbox) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.ps.Close()
		s.wg.Wait()
		close(s.stopped)
	})
	if err != nil {
		return fmt.Errorf("queue: closing pub/sub: %w", err)
	}
	return nil
}

func (s *Inbox) isClosed() bool {
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
//	KEYS: seq body meta ready lease enq dead
//	ARGV: retention ms
//	returns: 1 if the inbox is now empty (no key left), else 0
var sweepScript = redis.NewScript(luaCommon + `
retain(nowms(), tonumber(ARGV[1]))
return cleanup()
`)

// sweeper runs Sweep every SweepInterval on whichever replica takes the lock.
func (s *Inbox) sweeper() {
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
func (s *Inbox) Sweep(ctx context.Context) (int, error) {
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
			if queue.ValidateInbox(inbox) != nil {
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

// checkRedisVersion fails unless the server reports redis_version 7.0 or
// later (the scripts use ZMSCORE and rely on effects replication).
func checkRedisVersion(ctx context.Context, c redis.UniversalClient) error {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("queue: reading redis version: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err != nil || n < 7 {
			return fmt.Errorf("queue: redis %s is too old; 7.0 or later is required", v)
		}
		return nil
	}
	return fmt.Errorf("queue: redis did not report its version")
}

var allScripts = []*redis.Script{enqueueScript, pullScript, ackScript, statsScript,
	deadLettersScript, redriveScript, purgeScript, sweepScript}

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

package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/internal/boundedcache"
	"github.com/sealrelay/sealrelay/state"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StateFileName is the conventional file name of the embedded state in
// a broker data directory.
const StateFileName = "state.db"

// DefaultCleanupInterval is how often State deletes expired records.
const DefaultCleanupInterval = time.Minute

// Bucket names of State.
var (
	boltBktInst     = []byte("inst")     // org → Installation JSON
	boltBktRegTok   = []byte("rtok")     // token hash → exp ‖ {org, exp, used}
	boltBktAgent    = []byte("agent")    // agent id → Agent JSON
	boltBktAgentOrg = []byte("agentorg") // org ‖ 0 ‖ agent id → empty (index)
	boltBktAgentKey = []byte("agentkey") // signing public key → agent id
	boltBktAccess   = []byte("atok")     // token hash → exp ‖ {agent, org}
	boltBktOAuth    = []byte("oauth")    // state hash → exp
	boltBktNonce    = []byte("nonce")    // len(agent) ‖ agent ‖ nonce → exp
	boltBktSig      = []byte("usig")     // signature hash → exp
	boltBktDrops    = []byte("drops")    // agent id → exp ‖ dropRecord JSON
	boltBktDropsP   = []byte("dropsp")   // agent id → exp ‖ pending notice JSON
	boltBktMint     = []byte("mint")     // mint grant hash → exp ‖ org

	// boltTTLBuckets hold values that start with an 8-byte expiry and are
	// swept by Cleanup.
	boltTTLBuckets = [][]byte{boltBktRegTok, boltBktAccess, boltBktOAuth, boltBktNonce, boltBktSig, boltBktDrops, boltBktDropsP, boltBktMint}
	boltAllBuckets = append([][]byte{boltBktInst, boltBktAgent, boltBktAgentOrg, boltBktAgentKey}, boltTTLBuckets...)
)

// State implements state.Store in one bbolt file, for a single broker process
// without Redis (the embedded single-node mode of `broker serve`).
//
// Every mutation is one bbolt read-write transaction, fsynced before the call
// returns; bbolt serializes writers, which makes registration, nonces and
// one-time records atomic (the in-memory records below are guarded by
// mutexes). Records with a lifetime carry their
// expiry (Unix milliseconds) in the first 8 bytes of the value: reads treat an
// expired record as absent, and a cleanup goroutine deletes expired records
// every cleanup interval (see Cleanup). A registration token is kept for
// UsedRegistrationTokenRetention past its expiry, like the Redis engine does.
//
// Two kinds of records are kept in memory only, because they matter only to
// the running process and writing them would put two more fsyncs on every
// Slack event: rate-limit buckets (a restart merely refills them) and Slack
// event dedup claims. A pending claim belongs to a request of this process,
// so after a crash it must not hold back Slack's retry anyway; a completed
// claim forgotten by a restart means a retry that Slack sends across the
// restart is processed again, but stores no second copy: copies are
// enqueued with queue.Store.EnqueueID under ids derived from the event_id,
// which the embedded queue remembers on disk for an hour (and a copy that
// did get through twice would carry the same message id, which bridges
// de-duplicate). Nonces, one-time signatures, OAuth states, tokens, agents,
// installations and drop records are on disk.
//
// The file is opened with an exclusive lock; a second process opening it
// waits a second and fails.
type State struct {
	db  *bolt.DB
	now func() time.Time

	buckets localBuckets

	eventMu sync.Mutex
	events  map[string]boltEvent

	agents agentCache

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var _ state.Store = (*State)(nil)

// boltEvent is the in-memory dedup record of a Slack event id.
type boltEvent struct {
	done bool
	exp  time.Time
}

// StateOption configures OpenState.
type StateOption func(*stateConfig)

type stateConfig struct {
	cleanupInterval time.Duration
	now             func() time.Time
}

// WithCleanupInterval sets how often expired records are deleted
// (default DefaultCleanupInterval). Zero or negative disables the
// background cleanup; Cleanup can still be called directly.
func WithCleanupInterval(d time.Duration) StateOption {
	return func(c *stateConfig) { c.cleanupInterval = d }
}

// WithClock sets the clock used for lifetimes given as durations (OAuth
// states, event claims, nonces, signatures) and for cleanup. Meant for tests.
func WithClock(now func() time.Time) StateOption {
	return func(c *stateConfig) { c.now = now }
}

// OpenState opens (creating it and its directory, mode 0700, if needed)
// the bbolt file at path with mode 0600 and starts the cleanup goroutine.
// Close it when done.
func OpenState(path string, opts ...StateOption) (*State, error) {
	cfg := stateConfig{cleanupInterval: DefaultCleanupInterval, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open bolt state: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open bolt state %s: %w", path, err)
	}
	// Hot-path writes (nonces, signatures) use DB.Batch; keep a lone
	// writer's wait for company short.
	db.MaxBatchDelay = time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range boltAllBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open bolt state %s: create buckets: %w", path, err)
	}
	s := &State{db: db, now: cfg.now, events: map[string]boltEvent{}, done: make(chan struct{})}
	if cfg.cleanupInterval > 0 {
		s.wg.Add(1)
		go s.cleanupLoop(cfg.cleanupInterval)
	}
	return s, nil
}

func (s *State) cleanupLoop(every time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			// Errors here only delay deletion; reads already ignore
			// expired records.
			_, _ = s.Cleanup(context.Background())
		}
	}
}

// Cleanup deletes every expired record (on disk and in memory) and idle
// rate-limit bucket, and returns how many records it deleted.
func (s *State) Cleanup(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		for _, name := range boltTTLBuckets {
			b := tx.Bucket(name)
			var dead [][]byte
			err := b.ForEach(func(k, v []byte) error {
				exp, _, ok := boltSplitExp(v)
				if bytes.Equal(name, boltBktRegTok) { // kept past expiry
					exp = exp.Add(state.UsedRegistrationTokenRetention)
				}
				if !ok || !now.Before(exp) {
					dead = append(dead, bytes.Clone(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n += len(dead)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt state cleanup: %w", err)
	}
	s.buckets.sweep(now)
	s.eventMu.Lock()
	for k, e := range s.events {
		if !now.Before(e.exp) {
			delete(s.events, k)
			n++
		}
	}
	s.eventMu.Unlock()
	return n, nil
}

// Ping implements state.Store: it fails once the file is closed.
func (s *State) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.View(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("bolt state ping: %w", err)
	}
	return nil
}

// Close implements state.Store: it stops the cleanup goroutine and closes the file.
func (s *State) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("close bolt state: %w", cerr)
		}
	})
	return err
}

// boltExp prefixes payload with the expiry t in Unix milliseconds.
func boltExp(t time.Time, payload []byte) []byte {
	out := make([]byte, 8, 8+len(payload))
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	binary.BigEndian.PutUint64(out, uint64(ms))
	return append(out, payload...)
}

// boltSplitExp splits a value written by boltExp. The payload aliases v.
func boltSplitExp(v []byte) (time.Time, []byte, bool) {
	if len(v) < 8 {
		return time.Time{}, nil, false
	}
	ms := binary.BigEndian.Uint64(v[:8])
	if ms > math.MaxInt64 {
		return time.Time{}, nil, false
	}
	return time.UnixMilli(int64(ms)), v[8:], true
}

// boltLive returns the payload of a record that exists and has not expired
// at now.
func boltLive(b *bolt.Bucket, k []byte, now time.Time) ([]byte, bool) {
	v := b.Get(k)
	if v == nil {
		return nil, false
	}
	exp, p, ok := boltSplitExp(v)
	if !ok || !now.Before(exp) {
		return nil, false
	}
	return p, true
}

// PutInstallation implements state.Store.
func (s *State) PutInstallation(ctx context.Context, inst *state.Installation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := json.Marshal(inst)
	if err != nil {
		return fmt.Errorf("encode installation: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktInst).Put([]byte(inst.OrgID), b)
	})
	if err != nil {
		return fmt.Errorf("put installation: %w", err)
	}
	return nil
}

// GetInstallation implements state.Store.
func (s *State) GetInstallation(ctx context.Context, orgID string) (*state.Installation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var inst *state.Installation
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBktInst).Get([]byte(orgID))
		if v == nil {
			return state.ErrNotFound
		}
		inst = new(state.Installation)
		if err := json.Unmarshal(v, inst); err != nil {
			return fmt.Errorf("decode installation %s: %w", orgID, err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("get installation: %w", err)
	}
	return inst, nil
}

// UpdateInstallation implements state.Store in one bbolt Update transaction.
func (s *State) UpdateInstallation(ctx context.Context, orgID string, fn func(*state.Installation) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktInst)
		v := b.Get([]byte(orgID))
		if v == nil {
			return state.ErrNotFound
		}
		var inst state.Installation
		if err := json.Unmarshal(v, &inst); err != nil {
			return fmt.Errorf("decode installation %s: %w", orgID, err)
		}
		if fnErr = fn(&inst); fnErr != nil {
			return fnErr // rolls the transaction back
		}
		nb, err := json.Marshal(&inst)
		if err != nil {
			return fmt.Errorf("encode installation: %w", err)
		}
		return b.Put([]byte(orgID), nb)
	})
	switch {
	case fnErr != nil:
		return fnErr
	case errors.Is(err, state.ErrNotFound):
		return err
	case err != nil:
		return fmt.Errorf("update installation: %w", err)
	}
	return nil
}

// RevokeInstallation implements state.Store.
func (s *State) RevokeInstallation(ctx context.Context, orgID string, at time.Time) error {
	return s.UpdateInstallation(ctx, orgID, func(inst *state.Installation) error {
		inst.Revoke(at)
		return nil
	})
}

// ForEachSecret implements state.Installations in one read-only
// transaction.
func (s *State) ForEachSecret(ctx context.Context, fn func(owner, stored string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktInst).ForEach(func(k, v []byte) error {
			var inst state.Installation
			if err := json.Unmarshal(v, &inst); err != nil {
				return fmt.Errorf("decode installation %s: %w", k, err)
			}
			for _, sec := range []string{inst.BotToken, inst.BotRefreshToken} {
				if sec == "" {
					continue
				}
				if err := fn(inst.OrgID, sec); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

type boltRegToken struct {
	Org  string `json:"org"`
	Exp  int64  `json:"exp"` // Unix ms
	Used bool   `json:"used,omitempty"`
	// Mode is "replace" for a replace token; empty (older records) or
	// "add" otherwise.
	Mode string `json:"mode,omitempty"`
}

type boltAccess struct {
	Agent string `json:"agent"`
	Org   string `json:"org"`
}

// RegisterAgent implements state.Agents through Register (a replace token
// replaces the org's other agents here too).
func (s *State) RegisterAgent(ctx context.Context, h state.TokenHash, a *state.Agent, now time.Time, maxPerOrg int) error {
	_, err := s.Register(ctx, h, a, now, maxPerOrg)
	return err
}

func boltAgentOrgKey(org, id string) []byte {
	k := make([]byte, 0, len(org)+1+len(id))
	k = append(k, org...)
	k = append(k, 0)
	return append(k, id...)
}

// agentCache remembers decoded agent records by their stored bytes, so
// that the webhook path (ListAgents on every event) does not decode the
// same JSON again. An entry is used only when the record read in the
// current transaction is byte for byte the one it was decoded from, so a
// change made anywhere (registration, renewal, deletion) is seen at once.
// It is an internal/boundedcache (maxAgentCache entries, oldest evicted).
type agentCache struct {
	once sync.Once
	c    *boundedcache.Cache[string, agentCacheEntry] // agent id →
}

type agentCacheEntry struct {
	raw   []byte
	agent state.Agent
}

// maxAgentCache bounds the cache.
const maxAgentCache = 4096

// decode returns the agent stored as v (a copy the caller may keep).
func (c *agentCache) decode(id, v []byte) (*state.Agent, error) {
	c.once.Do(func() {
		c.c = boundedcache.New(boundedcache.Options[string, agentCacheEntry]{Max: maxAgentCache})
	})
	if e, ok := c.c.Get(string(id)); ok && bytes.Equal(e.raw, v) {
		a := e.agent
		return &a, nil
	}
	a, err := boltDecodeAgent(v)
	if err != nil {
		return nil, err
	}
	c.c.Put(string(id), agentCacheEntry{raw: bytes.Clone(v), agent: *a})
	return a, nil
}

func boltDecodeAgent(v []byte) (*state.Agent, error) {
	a := new(state.Agent)
	if err := json.Unmarshal(v, a); err != nil {
		return nil, fmt.Errorf("decode agent: %w", err)
	}
	return a, nil
}

// GetAgent implements state.Store.
func (s *State) GetAgent(ctx context.Context, id string) (*state.Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var a *state.Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		a, err = boltAgent(tx, id)
		return err
	})
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("get agent %s: %w", id, err)
	}
	return a, nil
}

// boltAgent reads and decodes agent id in tx: ErrNotFound when absent.
func boltAgent(tx *bolt.Tx, id string) (*state.Agent, error) {
	v := tx.Bucket(boltBktAgent).Get([]byte(id))
	if v == nil {
		return nil, state.ErrNotFound
	}
	return boltDecodeAgent(v)
}

// ListAgents implements state.Store.
func (s *State) ListAgents(ctx context.Context, orgID string) ([]*state.Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*state.Agent{}
	prefix := boltAgentOrgKey(orgID, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		c := tx.Bucket(boltBktAgentOrg).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := ab.Get(k[len(prefix):])
			if v == nil {
				continue
			}
			a, err := s.agents.decode(k[len(prefix):], v)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list agents of %s: %w", orgID, err)
	}
	return out, nil
}

// DeleteAgent implements state.Store.
func (s *State) DeleteAgent(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		v := ab.Get([]byte(id))
		if v == nil {
			return state.ErrNotFound
		}
		a, err := boltDecodeAgent(v)
		if err != nil {
			return err
		}
		for _, d := range []struct {
			b []byte
			k []byte
		}{
			{boltBktAgent, []byte(id)},
			{boltBktAgentOrg, boltAgentOrgKey(a.OrgID, id)},
			{boltBktAccess, a.AccessTokenHash[:]},
		} {
			if err := tx.Bucket(d.b).Delete(d.k); err != nil {
				return err
			}
		}
		kb := tx.Bucket(boltBktAgentKey)
		if owner := kb.Get(a.SigningPublicKey[:]); owner != nil && string(owner) == id {
			return kb.Delete(a.SigningPublicKey[:])
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete agent %s: %w", id, err)
	}
	return nil
}

// LookupAccessToken implements state.Store.
func (s *State) LookupAccessToken(ctx context.Context, h state.TokenHash, now time.Time) (state.AccessGrant, error) {
	if err := ctx.Err(); err != nil {
		return state.AccessGrant{}, err
	}
	var g state.AccessGrant
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		g, err = boltAccessGrant(tx, h)
		return err
	})
	if err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return state.AccessGrant{}, err
		}
		return state.AccessGrant{}, fmt.Errorf("lookup access token: %w", err)
	}
	if !now.Before(g.ExpiresAt) {
		return g, state.ErrExpired
	}
	return g, nil
}

// LookupAgentByAccessToken implements state.Agents: the access token and
// its agent read in one read transaction (so both come from the same
// snapshot).
func (s *State) LookupAgentByAccessToken(ctx context.Context, h state.TokenHash, now time.Time) (state.AccessGrant, *state.Agent, error) {
	if err := ctx.Err(); err != nil {
		return state.AccessGrant{}, nil, err
	}
	var g state.AccessGrant
	var a *state.Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if g, err = boltAccessGrant(tx, h); err != nil {
			return err
		}
		if !now.Before(g.ExpiresAt) {
			return state.ErrExpired
		}
		if a, err = boltAgent(tx, g.AgentID); err != nil && !errors.Is(err, state.ErrNotFound) {
			return fmt.Errorf("get agent %s: %w", g.AgentID, err)
		}
		return err
	})
	switch {
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrExpired):
		return g, nil, err // g is zero when the token was not found
	case err != nil:
		return g, nil, fmt.Errorf("lookup access token: %w", err)
	}
	return g, a, nil
}

// boltAccessGrant reads the access token h in tx (ErrNotFound when
// absent), without checking its expiry.
func boltAccessGrant(tx *bolt.Tx, h state.TokenHash) (state.AccessGrant, error) {
	v := tx.Bucket(boltBktAccess).Get(h[:])
	if v == nil {
		return state.AccessGrant{}, state.ErrNotFound
	}
	exp, p, ok := boltSplitExp(v)
	if !ok {
		return state.AccessGrant{}, errors.New("malformed access token record")
	}
	var acc boltAccess
	if err := json.Unmarshal(p, &acc); err != nil {
		return state.AccessGrant{}, fmt.Errorf("decode access token: %w", err)
	}
	return state.AccessGrant{AgentID: acc.Agent, OrgID: acc.Org, ExpiresAt: exp}, nil
}

// PutOAuthState implements state.Store.
func (s *State) PutOAuthState(ctx context.Context, h state.TokenHash, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	exp := s.now().Add(ttl)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktOAuth).Put(h[:], boltExp(exp, nil))
	})
	if err != nil {
		return fmt.Errorf("put oauth state: %w", err)
	}
	return nil
}

// ConsumeOAuthState implements state.Store.
func (s *State) ConsumeOAuthState(ctx context.Context, h state.TokenHash) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.now()
	found := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktOAuth)
		_, found = boltLive(b, h[:], now)
		if b.Get(h[:]) == nil {
			return nil
		}
		return b.Delete(h[:])
	})
	if err != nil {
		return false, fmt.Errorf("consume oauth state: %w", err)
	}
	return found, nil
}

// ClaimEvent implements state.Store. Event claims live in memory (see State).
func (s *State) ClaimEvent(ctx context.Context, eventID string) (state.EventClaim, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if e, ok := s.events[eventID]; ok && now.Before(e.exp) {
		if e.done {
			return state.EventDone, nil
		}
		return state.EventInProgress, nil
	}
	s.events[eventID] = boltEvent{exp: now.Add(state.EventPendingTTL)}
	return state.EventClaimed, nil
}

// CompleteEvent implements state.Store.
func (s *State) CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	exp := s.now().Add(ttl)
	s.eventMu.Lock()
	s.events[eventID] = boltEvent{done: true, exp: exp}
	s.eventMu.Unlock()
	return nil
}

// ReleaseEvent implements state.Store. A completed event is left alone.
func (s *State) ReleaseEvent(ctx context.Context, eventID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if e, ok := s.events[eventID]; ok && (!e.done || !now.Before(e.exp)) {
		delete(s.events, eventID)
	}
	return nil
}

// useOnce records key in bucket until now+ttl and reports whether it was
// absent (or expired).
func (s *State) useOnce(bucket, key []byte, ttl time.Duration) (bool, error) {
	now := s.now()
	fresh := false
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if _, ok := boltLive(b, key, now); ok {
			fresh = false
			return nil
		}
		fresh = true
		return b.Put(key, boltExp(now.Add(ttl), nil))
	})
	return fresh, err
}

// UseNonce implements state.Store.
func (s *State) UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k := binary.AppendUvarint(nil, uint64(len(agentID)))
	k = append(k, agentID...)
	k = append(k, nonce...)
	ok, err := s.useOnce(boltBktNonce, k, ttl)
	if err != nil {
		return false, fmt.Errorf("record nonce: %w", err)
	}
	return ok, nil
}

// UseSignature implements state.Store.
func (s *State) UseSignature(ctx context.Context, h state.TokenHash, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ok, err := s.useOnce(boltBktSig, h[:], ttl)
	if err != nil {
		return false, fmt.Errorf("record signature: %w", err)
	}
	return ok, nil
}

// Allow implements state.Store with an in-memory token bucket per key. A limit
// with Rate <= 0 or Burst < 1 allows everything.
func (s *State) Allow(ctx context.Context, key string, limit state.RateLimit, now time.Time) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	ok, wait := s.buckets.allow(key, limit, now)
	return ok, wait, nil
}

// ClaimEventAndListAgents implements state.Agents: the claim is in memory,
// so it costs nothing next to the one read transaction of ListAgents.
func (s *State) ClaimEventAndListAgents(ctx context.Context, eventID, orgID string) (state.EventClaim, []*state.Agent, error) {
	c, err := s.ClaimEvent(ctx, eventID)
	if err != nil || c != state.EventClaimed {
		return c, nil, err
	}
	agents, err := s.ListAgents(ctx, orgID)
	if err != nil {
		// Nothing was stored for the event: let Slack's retry claim it.
		_ = s.ReleaseEvent(context.WithoutCancel(ctx), eventID)
		return 0, nil, err
	}
	return c, agents, nil
}

// NewHoldHub implements state.HoldHubs: one process serves every request,
// so held requests meet in memory.
func (s *State) NewHoldHub(*slog.Logger) (state.HoldHub, error) { return state.NewMemHolds(), nil }

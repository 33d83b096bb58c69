package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltStateFileName is the conventional file name of the embedded state in
// a broker data directory.
const BoltStateFileName = "state.db"

// DefaultBoltCleanupInterval is how often BoltState deletes expired records.
const DefaultBoltCleanupInterval = time.Minute

// Bucket names of BoltState.
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

	// boltTTLBuckets hold values that start with an 8-byte expiry and are
	// swept by Cleanup.
	boltTTLBuckets = [][]byte{boltBktRegTok, boltBktAccess, boltBktOAuth, boltBktNonce, boltBktSig, boltBktDrops, boltBktDropsP}
	boltAllBuckets = append([][]byte{boltBktInst, boltBktAgent, boltBktAgentOrg, boltBktAgentKey}, boltTTLBuckets...)
)

// BoltState implements State in one bbolt file, for a single broker process
// without Redis (the embedded single-node mode of `broker serve`).
//
// Every mutation is one bbolt read-write transaction, fsynced before the call
// returns; bbolt serializes writers, which makes registration, nonces and
// one-time records atomic (the in-memory records below are guarded by
// mutexes). Records with a lifetime carry their
// expiry (Unix milliseconds) in the first 8 bytes of the value: reads treat an
// expired record as absent, and a cleanup goroutine deletes expired records
// every cleanup interval (see Cleanup). A registration token is kept for
// UsedRegistrationTokenRetention past its expiry, like RedisState does.
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
type BoltState struct {
	db  *bolt.DB
	now func() time.Time

	bucketMu sync.Mutex
	buckets  map[string]*boltTokenBucket

	eventMu sync.Mutex
	events  map[string]boltEvent

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

var _ State = (*BoltState)(nil)

// boltEvent is the in-memory dedup record of a Slack event id.
type boltEvent struct {
	done bool
	exp  time.Time
}

type boltTokenBucket struct {
	tokens float64
	ts     time.Time
	full   time.Time // when the bucket is full again (for cleanup)
}

// BoltStateOption configures OpenBoltState.
type BoltStateOption func(*boltStateConfig)

type boltStateConfig struct {
	cleanupInterval time.Duration
	now             func() time.Time
}

// WithBoltCleanupInterval sets how often expired records are deleted
// (default DefaultBoltCleanupInterval). Zero or negative disables the
// background cleanup; Cleanup can still be called directly.
func WithBoltCleanupInterval(d time.Duration) BoltStateOption {
	return func(c *boltStateConfig) { c.cleanupInterval = d }
}

// WithBoltClock sets the clock used for lifetimes given as durations (OAuth
// states, event claims, nonces, signatures) and for cleanup. Meant for tests.
func WithBoltClock(now func() time.Time) BoltStateOption {
	return func(c *boltStateConfig) { c.now = now }
}

// OpenBoltState opens (creating it and its directory, mode 0700, if needed)
// the bbolt file at path with mode 0600 and starts the cleanup goroutine.
// Close it when done.
func OpenBoltState(path string, opts ...BoltStateOption) (*BoltState, error) {
	cfg := boltStateConfig{cleanupInterval: DefaultBoltCleanupInterval, now: time.Now}
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
	s := &BoltState{db: db, now: cfg.now, buckets: map[string]*boltTokenBucket{}, events: map[string]boltEvent{}, done: make(chan struct{})}
	if cfg.cleanupInterval > 0 {
		s.wg.Add(1)
		go s.cleanupLoop(cfg.cleanupInterval)
	}
	return s, nil
}

func (s *BoltState) cleanupLoop(every time.Duration) {
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
func (s *BoltState) Cleanup(ctx context.Context) (int, error) {
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
					exp = exp.Add(UsedRegistrationTokenRetention)
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
	s.bucketMu.Lock()
	for k, b := range s.buckets {
		if !now.Before(b.full) {
			delete(s.buckets, k)
		}
	}
	s.bucketMu.Unlock()
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

// Ping implements State: it fails once the file is closed.
func (s *BoltState) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.db.View(func(*bolt.Tx) error { return nil }); err != nil {
		return fmt.Errorf("bolt state ping: %w", err)
	}
	return nil
}

// Close implements State: it stops the cleanup goroutine and closes the file.
func (s *BoltState) Close() error {
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

// PutInstallation implements State.
func (s *BoltState) PutInstallation(ctx context.Context, inst *Installation) error {
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

// GetInstallation implements State.
func (s *BoltState) GetInstallation(ctx context.Context, orgID string) (*Installation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var inst *Installation
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBktInst).Get([]byte(orgID))
		if v == nil {
			return ErrNotFound
		}
		inst = new(Installation)
		if err := json.Unmarshal(v, inst); err != nil {
			return fmt.Errorf("decode installation %s: %w", orgID, err)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("get installation: %w", err)
	}
	return inst, nil
}

// RevokeInstallation implements State.
func (s *BoltState) RevokeInstallation(ctx context.Context, orgID string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktInst)
		v := b.Get([]byte(orgID))
		if v == nil {
			return ErrNotFound
		}
		var inst Installation
		if err := json.Unmarshal(v, &inst); err != nil {
			return fmt.Errorf("decode installation %s: %w", orgID, err)
		}
		inst.BotToken, inst.BotRefreshToken = "", ""
		inst.BotTokenExpiresAt = time.Time{}
		inst.Revoked = true
		inst.RevokedAt = at.UTC()
		inst.UpdatedAt = at.UTC()
		nb, err := json.Marshal(&inst)
		if err != nil {
			return fmt.Errorf("encode installation: %w", err)
		}
		return b.Put([]byte(orgID), nb)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("revoke installation: %w", err)
	}
	return nil
}

// RewrapSecrets implements State. All installations are rewritten in one
// transaction: when fn fails for any secret, nothing is changed and the
// count is 0.
func (s *BoltState) RewrapSecrets(ctx context.Context, fn func(stored, owner string) (string, bool, error)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	total := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		total = 0
		b := tx.Bucket(boltBktInst)
		type upd struct{ k, v []byte }
		var updates []upd
		err := b.ForEach(func(k, v []byte) error {
			var inst Installation
			if err := json.Unmarshal(v, &inst); err != nil {
				return fmt.Errorf("decode installation %s: %w", k, err)
			}
			n := 0
			for _, f := range []*string{&inst.BotToken, &inst.BotRefreshToken} {
				if *f == "" {
					continue
				}
				nv, changed, err := fn(*f, inst.OrgID)
				if err != nil {
					return fmt.Errorf("rewrap secret of %s: %w", inst.OrgID, err)
				}
				if changed {
					*f = nv
					n++
				}
			}
			if n == 0 {
				return nil
			}
			nb, err := json.Marshal(&inst)
			if err != nil {
				return fmt.Errorf("encode installation: %w", err)
			}
			updates = append(updates, upd{bytes.Clone(k), nb})
			total += n
			return nil
		})
		if err != nil {
			return err
		}
		for _, u := range updates {
			if err := b.Put(u.k, u.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("rewrap secrets: %w", err)
	}
	return total, nil
}

type boltRegToken struct {
	Org  string `json:"org"`
	Exp  int64  `json:"exp"` // Unix ms
	Used bool   `json:"used,omitempty"`
}

// PutRegistrationToken implements State.
func (s *BoltState) PutRegistrationToken(ctx context.Context, h TokenHash, orgID string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := json.Marshal(boltRegToken{Org: orgID, Exp: expiresAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("encode registration token: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktRegTok).Put(h[:], boltExp(expiresAt, p))
	})
	if err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	return nil
}

type boltAccess struct {
	Agent string `json:"agent"`
	Org   string `json:"org"`
}

// RegisterAgent implements State.
func (s *BoltState) RegisterAgent(ctx context.Context, h TokenHash, a *Agent, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode agent: %w", err)
	}
	acc, err := json.Marshal(boltAccess{Agent: a.ID, Org: a.OrgID})
	if err != nil {
		return fmt.Errorf("encode access token: %w", err)
	}
	clock := s.now()
	err = s.db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(boltBktRegTok)
		v := rb.Get(h[:])
		if v == nil {
			return ErrNotFound
		}
		exp, p, ok := boltSplitExp(v)
		if !ok || !clock.Before(exp.Add(UsedRegistrationTokenRetention)) {
			return ErrNotFound // past retention: forgotten
		}
		var rt boltRegToken
		if err := json.Unmarshal(p, &rt); err != nil {
			return fmt.Errorf("decode registration token: %w", err)
		}
		if rt.Org != a.OrgID {
			return ErrNotFound
		}
		if rt.Used {
			return ErrUsed
		}
		if rt.Exp <= now.UnixMilli() {
			return ErrExpired
		}
		kb := tx.Bucket(boltBktAgentKey)
		if kb.Get(a.SigningPublicKey[:]) != nil {
			return ErrAgentExists
		}
		ab := tx.Bucket(boltBktAgent)
		if ab.Get([]byte(a.ID)) != nil {
			return fmt.Errorf("agent id %s: %w", a.ID, ErrConflict)
		}
		rt.Used = true
		np, err := json.Marshal(rt)
		if err != nil {
			return fmt.Errorf("encode registration token: %w", err)
		}
		if err := rb.Put(h[:], boltExp(exp, np)); err != nil {
			return err
		}
		if err := kb.Put(a.SigningPublicKey[:], []byte(a.ID)); err != nil {
			return err
		}
		if err := ab.Put([]byte(a.ID), rec); err != nil {
			return err
		}
		if err := tx.Bucket(boltBktAgentOrg).Put(boltAgentOrgKey(a.OrgID, a.ID), nil); err != nil {
			return err
		}
		return tx.Bucket(boltBktAccess).Put(a.AccessTokenHash[:], boltExp(a.AccessTokenExpiresAt, acc))
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUsed), errors.Is(err, ErrExpired), errors.Is(err, ErrAgentExists):
		return err
	default:
		return fmt.Errorf("register agent: %w", err)
	}
}

func boltAgentOrgKey(org, id string) []byte {
	k := make([]byte, 0, len(org)+1+len(id))
	k = append(k, org...)
	k = append(k, 0)
	return append(k, id...)
}

func boltDecodeAgent(v []byte) (*Agent, error) {
	a := new(Agent)
	if err := json.Unmarshal(v, a); err != nil {
		return nil, fmt.Errorf("decode agent: %w", err)
	}
	return a, nil
}

// GetAgent implements State.
func (s *BoltState) GetAgent(ctx context.Context, id string) (*Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var a *Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBktAgent).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		a, err = boltDecodeAgent(v)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("get agent %s: %w", id, err)
	}
	return a, nil
}

// ListAgents implements State.
func (s *BoltState) ListAgents(ctx context.Context, orgID string) ([]*Agent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := []*Agent{}
	prefix := boltAgentOrgKey(orgID, "")
	err := s.db.View(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		c := tx.Bucket(boltBktAgentOrg).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			v := ab.Get(k[len(prefix):])
			if v == nil {
				continue
			}
			a, err := boltDecodeAgent(v)
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

// DeleteAgent implements State.
func (s *BoltState) DeleteAgent(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		ab := tx.Bucket(boltBktAgent)
		v := ab.Get([]byte(id))
		if v == nil {
			return ErrNotFound
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
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("delete agent %s: %w", id, err)
	}
	return nil
}

// LookupAccessToken implements State.
func (s *BoltState) LookupAccessToken(ctx context.Context, h TokenHash, now time.Time) (AccessGrant, error) {
	if err := ctx.Err(); err != nil {
		return AccessGrant{}, err
	}
	var g AccessGrant
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBktAccess).Get(h[:])
		if v == nil {
			return ErrNotFound
		}
		exp, p, ok := boltSplitExp(v)
		if !ok {
			return errors.New("malformed access token record")
		}
		var acc boltAccess
		if err := json.Unmarshal(p, &acc); err != nil {
			return fmt.Errorf("decode access token: %w", err)
		}
		g = AccessGrant{AgentID: acc.Agent, OrgID: acc.Org, ExpiresAt: exp}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return AccessGrant{}, err
		}
		return AccessGrant{}, fmt.Errorf("lookup access token: %w", err)
	}
	if !now.Before(g.ExpiresAt) {
		return g, ErrExpired
	}
	return g, nil
}

// PutOAuthState implements State.
func (s *BoltState) PutOAuthState(ctx context.Context, h TokenHash, ttl time.Duration) error {
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

// ConsumeOAuthState implements State.
func (s *BoltState) ConsumeOAuthState(ctx context.Context, h TokenHash) (bool, error) {
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

// ClaimEvent implements State. Event claims live in memory (see BoltState).
func (s *BoltState) ClaimEvent(ctx context.Context, eventID string) (EventClaim, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := s.now()
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	if e, ok := s.events[eventID]; ok && now.Before(e.exp) {
		if e.done {
			return EventDone, nil
		}
		return EventInProgress, nil
	}
	s.events[eventID] = boltEvent{exp: now.Add(EventPendingTTL)}
	return EventClaimed, nil
}

// CompleteEvent implements State.
func (s *BoltState) CompleteEvent(ctx context.Context, eventID string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	exp := s.now().Add(ttl)
	s.eventMu.Lock()
	s.events[eventID] = boltEvent{done: true, exp: exp}
	s.eventMu.Unlock()
	return nil
}

// ReleaseEvent implements State. A completed event is left alone.
func (s *BoltState) ReleaseEvent(ctx context.Context, eventID string) error {
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
func (s *BoltState) useOnce(bucket, key []byte, ttl time.Duration) (bool, error) {
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

// UseNonce implements State.
func (s *BoltState) UseNonce(ctx context.Context, agentID, nonce string, ttl time.Duration) (bool, error) {
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

// UseSignature implements State.
func (s *BoltState) UseSignature(ctx context.Context, h TokenHash, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ok, err := s.useOnce(boltBktSig, h[:], ttl)
	if err != nil {
		return false, fmt.Errorf("record signature: %w", err)
	}
	return ok, nil
}

// Allow implements State with an in-memory token bucket per key. A limit
// with Rate <= 0 or Burst < 1 allows everything.
func (s *BoltState) Allow(ctx context.Context, key string, limit RateLimit, now time.Time) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if limit.Rate <= 0 || limit.Burst < 1 {
		return true, 0, nil
	}
	burst := float64(limit.Burst)
	s.bucketMu.Lock()
	defer s.bucketMu.Unlock()
	b, ok := s.buckets[key]
	if !ok {
		b = &boltTokenBucket{tokens: burst, ts: now}
		s.buckets[key] = b
	}
	if now.After(b.ts) {
		b.tokens = math.Min(burst, b.tokens+now.Sub(b.ts).Seconds()*limit.Rate)
		b.ts = now
	}
	allowed := false
	var wait time.Duration
	if b.tokens >= 1 {
		b.tokens--
		allowed = true
	} else {
		wait = time.Duration(math.Ceil((1-b.tokens)*1000/limit.Rate)) * time.Millisecond
	}
	b.full = b.ts.Add(time.Duration((burst - b.tokens) / limit.Rate * float64(time.Second)))
	return allowed, wait, nil
}

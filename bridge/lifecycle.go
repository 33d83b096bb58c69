package bridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// Agent lifecycle timing (docs/protocol.md §8.3, §8.4).
const (
	// AssumedTokenLifetime is the token lifetime assumed when the
	// configuration has an expiry but no issue time (files written before
	// SLACK_BROKER_ACCESS_TOKEN_ISSUED_AT existed): the broker's default.
	AssumedTokenLifetime = 90 * 24 * time.Hour
	// PreviousKeyQuiet is how long `bridge run` keeps the previous box key
	// after a rotation: it is dropped after a pull that returned nothing,
	// once this long has passed both since the rotation and since the
	// last message that needed it (or since the bridge started).
	PreviousKeyQuiet = 24 * time.Hour
	// renewBackoffMax caps the wait between failed renewals. It stays
	// below the broker's default token overlap (10 minutes), so that a
	// renewal whose answer was lost is retried while the old token works.
	renewBackoffMax = 5 * time.Minute
)

// Lifecycle events reported to the test hook.
const (
	lifeRenewed     = "renewed"
	lifeRenewFailed = "renew_failed"
	lifeSaveFailed  = "save_failed"
	lifePrevDropped = "previous_key_dropped"
)

// loadLifecycle reads the sealrelay lifecycle variables of the
// configuration into id.
func loadLifecycle(id *Identity, get func(string) string, lookupEnv func(string) (string, bool), path string) error {
	id.ConfigPath = path
	if v, ok := lookupEnv(EnvAccessToken); ok && v != "" {
		id.TokenFromEnv = true
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{EnvAccessTokenIssuedAt, &id.AccessTokenIssuedAt}, {EnvPreviousServerKeyRetiredAt, &id.PreviousBoxKeyRetiredAt}} {
		if v := get(t.name); v != "" {
			ts, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return fmt.Errorf("config %s: not an RFC 3339 time", t.name)
			}
			*t.dst = ts
		}
	}
	if v := get(EnvPreviousServerPrivateKey); v != "" {
		kp, err := crypto.ParseBoxKeyPair(v)
		if err != nil {
			return fmt.Errorf("config %s: %w", EnvPreviousServerPrivateKey, err)
		}
		id.PreviousBoxKey = kp
	}
	return nil
}

// tokenState is the access token in use; replaced as a whole on renewal.
type tokenState struct {
	token           string
	expires, issued time.Time
}

// renewAt returns when t is due for renewal: when less than a third of its
// lifetime (expiry − issue time, or AssumedTokenLifetime) is left. Zero
// when the expiry is unknown (nothing to renew against).
func (t *tokenState) renewAt() time.Time {
	if t.expires.IsZero() {
		return time.Time{}
	}
	life := AssumedTokenLifetime
	if !t.issued.IsZero() && t.expires.After(t.issued) {
		life = t.expires.Sub(t.issued)
	}
	return t.expires.Add(-life / 3)
}

// lifecycle is the Bridge's renewable token and previous box key.
type lifecycle struct {
	tok atomic.Pointer[tokenState]

	mu          sync.Mutex
	prev        *crypto.BoxKeyPair
	prevRetired time.Time
	prevLastUse time.Time

	fileMu sync.Mutex // one configuration rewrite at a time
	// hook, when set (tests, before Run), hears every lifecycle event.
	hook func(event string, err error)
}

func (b *Bridge) initLifecycle() {
	b.life.tok.Store(&tokenState{token: b.cfg.AccessToken, expires: b.cfg.AccessTokenExpiresAt, issued: b.cfg.AccessTokenIssuedAt})
	b.life.prev = b.cfg.PreviousBoxKey
	b.life.prevRetired = b.cfg.PreviousBoxKeyRetiredAt
	b.life.prevLastUse = b.cfg.Now()
}

func (b *Bridge) lifeEvent(event string, err error) {
	if b.life.hook != nil {
		b.life.hook(event, err)
	}
}

// accessToken returns the bearer token to use now.
func (b *Bridge) accessToken() string { return b.life.tok.Load().token }

// openEnvelope verifies and opens m with the current box key, then with
// the previous one (messages sealed before a `bridge rotate-keys`).
func (b *Bridge) openEnvelope(m protocol.InboxMessage) (*protocol.Envelope, []byte, error) {
	env, pt, err := protocol.OpenEnvelope(m, b.cfg.BrokerSigningKey, b.cfg.BoxKey)
	if err == nil {
		return env, pt, nil
	}
	b.life.mu.Lock()
	prev := b.life.prev
	b.life.mu.Unlock()
	if prev == nil {
		return nil, nil, err
	}
	env, pt, err2 := protocol.OpenEnvelope(m, b.cfg.BrokerSigningKey, prev)
	if err2 != nil {
		return nil, nil, err
	}
	b.life.mu.Lock()
	b.life.prevLastUse = b.cfg.Now()
	b.life.mu.Unlock()
	return env, pt, nil
}

// afterPull drops the previous box key after a pull that returned nothing
// once PreviousKeyQuiet has passed since the rotation and its last use.
func (b *Bridge) afterPull(n int) {
	if n > 0 {
		return
	}
	now := b.cfg.Now()
	b.life.mu.Lock()
	prev := b.life.prev
	due := prev != nil && now.Sub(b.life.prevRetired) >= PreviousKeyQuiet && now.Sub(b.life.prevLastUse) >= PreviousKeyQuiet
	b.life.mu.Unlock()
	if !due {
		return
	}
	err := b.saveIdentity(func(f *EnvFile) {
		f.Delete(EnvPreviousServerPrivateKey)
		f.Delete(EnvPreviousServerKeyRetiredAt)
	})
	if err != nil {
		b.log.Warn("could not drop the previous box key from the configuration; kept for now", "err", err)
		return
	}
	b.life.mu.Lock()
	if b.life.prev == prev {
		b.life.prev = nil
	}
	b.life.mu.Unlock()
	b.log.Info("previous box key dropped: no message has needed it since the rotation",
		"retired_at", b.life.prevRetired.UTC().Format(time.RFC3339), "quiet_for", PreviousKeyQuiet.String())
	b.lifeEvent(lifePrevDropped, nil)
}

// saveIdentity applies edit to the configuration file and writes it back
// atomically. Without a ConfigPath it does nothing.
func (b *Bridge) saveIdentity(edit func(*EnvFile)) error {
	if b.cfg.ConfigPath == "" {
		return nil
	}
	b.life.fileMu.Lock()
	defer b.life.fileMu.Unlock()
	f, err := ReadEnvFile(b.cfg.ConfigPath)
	if err != nil {
		return err
	}
	edit(f)
	return WriteEnvFile(b.cfg.ConfigPath, f)
}

// startRenewal runs the renewal loop until the returned stop is called.
func (b *Bridge) startRenewal(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.renewLoop(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// renewLoop renews the access token when a third of its lifetime is left,
// retrying failures with backoff, and saves each new token.
func (b *Bridge) renewLoop(ctx context.Context) {
	backoff := b.cfg.BackoffMin
	unsaved := false
	for {
		cur := b.life.tok.Load()
		at := cur.renewAt()
		if at.IsZero() {
			return
		}
		if wait := at.Sub(b.cfg.Now()); wait > 0 && !unsaved {
			// Re-check at least hourly: the clock may jump (suspend).
			if !sleepCtx(ctx, min(wait, time.Hour)) {
				return
			}
			continue
		}
		var err error
		event := lifeRenewFailed
		if unsaved {
			err = b.saveToken(cur)
			event = lifeSaveFailed
		} else if nt, rerr := b.renewOnce(ctx); rerr != nil {
			err = rerr
		} else {
			cur = nt
			// Saved before it is logged, so that the log line means the
			// file holds the new token (unless an error follows).
			err = b.saveToken(cur)
			event = lifeSaveFailed
			b.log.Info("access token renewed", "expires_at", cur.expires.UTC().Format(time.RFC3339), "saved", err == nil)
			b.lifeEvent(lifeRenewed, nil)
			if b.cfg.TokenFromEnv {
				b.log.Warn("the access token comes from the environment (" + EnvAccessToken + "), which overrides the renewed token saved in the configuration file at the next start: remove the variable")
			}
		}
		if err == nil {
			unsaved = false
			backoff = b.cfg.BackoffMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if event == lifeSaveFailed {
			unsaved = true
			b.log.Error("renewed access token could not be saved; it works until this process stops, retrying the write", "err", err, "config", b.cfg.ConfigPath)
		} else {
			b.log.Warn("access token renewal failed; retrying", "err", err, "retry_in", backoff,
				"expires_at", cur.expires.UTC().Format(time.RFC3339))
		}
		b.lifeEvent(event, err)
		if !sleepCtx(ctx, jitter(backoff)) {
			return
		}
		backoff = min(backoff*2, renewBackoffMax)
	}
}

func (b *Bridge) saveToken(t *tokenState) error {
	return b.saveIdentity(func(f *EnvFile) {
		f.Set(EnvAccessToken, t.token)
		f.Set(EnvAccessTokenExpiresAt, t.expires.UTC().Format(time.RFC3339))
		f.Set(EnvAccessTokenIssuedAt, t.issued.UTC().Format(time.RFC3339))
	})
}

// renewOnce calls POST /api/agent/renew and swaps the token in memory.
func (b *Bridge) renewOnce(ctx context.Context) (*tokenState, error) {
	cur := b.life.tok.Load()
	nb, err := crypto.RandomBytes(crypto.NonceSize)
	if err != nil {
		return nil, err
	}
	nonce := base64.StdEncoding.EncodeToString(nb)
	ts := b.cfg.Now().Unix()
	sig := b.cfg.SigningKey.Sign(protocol.RenewSigningBytes(b.cfg.OrgID, ts, nonce))
	body, err := marshal(protocol.RenewRequest{OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, ProtocolVersion: protocol.Version,
		Nonce: nonce, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	if err != nil {
		return nil, err
	}
	var resp protocol.RenewResponse
	if err := b.client.do(ctx, http.MethodPost, "/api/agent/renew", cur.token, body, 30*time.Second, &resp); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	nt, err := tokenFromRenewal(&resp, b.cfg.Now())
	if err != nil {
		return nil, err
	}
	b.life.tok.Store(nt)
	exp := nt.expires
	b.mu.Lock()
	b.health.AccessTokenExpires = &exp
	b.mu.Unlock()
	return nt, nil
}

func tokenFromRenewal(r *protocol.RenewResponse, now time.Time) (*tokenState, error) {
	if r.BrokerAccessToken == "" || len(r.BrokerAccessToken) > 512 {
		return nil, errors.New("renew: the broker answered no usable access token")
	}
	exp, err := time.Parse(time.RFC3339, r.BrokerAccessTokenExpiresAt)
	if err != nil {
		return nil, errors.New("renew: broker_access_token_expires_at is not an RFC 3339 time")
	}
	issued := now
	if t, err := time.Parse(time.RFC3339, r.BrokerAccessTokenIssuedAt); err == nil {
		issued = t
	}
	return &tokenState{token: r.BrokerAccessToken, expires: exp, issued: issued}, nil
}

// migrateSpool re-reads a spool whose records did not open with the
// current key using the previous box key (a `bridge rotate-keys` since it
// was written) and, when that recovers more, returns that load with the
// current-key spool: newSpooledHub rewrites the file from it, sealing every
// record under the current key.
func migrateSpool(cfg Config, cur *spool, ld *spoolLoad, key *crypto.LocalKey, logger interface {
	Info(string, ...any)
}) (*spool, *spoolLoad, error) {
	oldKey := cfg.PreviousBoxKey.DeriveLocalKey(spoolKeyLabel)
	defer oldKey.Wipe()
	old, oldLd, err := openSpool(cfg.StateDir, oldKey)
	if err != nil {
		return nil, nil, err
	}
	defer old.close()
	if len(oldLd.items) <= len(ld.items) && oldLd.next <= ld.next {
		return cur, ld, nil
	}
	logger.Info("stream spool re-sealed under the rotated box key", "events", len(oldLd.items))
	oldLd.skipped = 0
	return cur, oldLd, nil
}

// Package bridge is the agent half of sealrelay. It runs next to the agent,
// behind NAT, with outbound HTTPS only: it long-polls the broker's inbox,
// verifies, decrypts and de-duplicates each message, delivers it to the
// local app (forwarded as a signed Slack request, or streamed as Server-Sent
// Events), acks what was delivered, and relays the agent's replies to the
// broker through a local API on 127.0.0.1:7890.
//
// Typical library use:
//
//	id, _ := bridge.LoadIdentity(path, nil, false)
//	b, _ := bridge.New(bridge.Config{Identity: *id, StateDir: dir, Stream: true}, logger)
//	defer b.Close()
//	go http.Serve(ln, b.Handler())
//	err := b.Run(ctx)
package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// Bridge is a running agent half: the poll loop (Run) and the local API
// (Handler). Create it with New; it is safe for concurrent use.
type Bridge struct {
	cfg           Config
	log           *slog.Logger
	client        *client
	forwardClient *http.Client
	shared        *crypto.SharedKey
	dedup         *dedupStore
	hub           *streamHub
	metrics       *metrics
	webapi        *webAPI
	done          chan struct{}
	closeOnce     sync.Once
	running       atomic.Bool

	// partial records which sinks already took a message whose delivery
	// failed at a later sink, so that a retry does not repeat them.
	partial map[string]uint8
	// pending holds the messages left over when a delivery failed: they are
	// retried locally, in order, for up to LocalRetryWindow.
	pending   []protocol.InboxMessage
	pendingAt time.Time
	// lastKeyCheck limits broker key checks after bad signatures to one a
	// minute.
	lastKeyCheck time.Time
	// streamWaiting is set while the stream refuses events (logged once).
	streamWaiting bool
	// backlog is set when the last pull came back full: the next one asks
	// for Config.BacklogMaxMessages.
	backlog bool
	// acking is the ack in flight (nil when none): cycle sends a batch's
	// ack and goes on to the next pull without waiting for the answer; the
	// next cycle collects it before it sends its own (one ack in flight).
	acking *pendingAck

	// sm is the Socket Mode emulation (socketmode.go).
	sm *socketHub
	// dmu guards partial, streamWaiting and retries, which the delivery
	// lanes share (deliver.go).
	dmu sync.Mutex
	// retries counts the earlier failed deliveries of a message, for
	// Slack's retry headers and retry_attempt.
	retries map[string]*retryState
	// authHintOnce reports a 401/403 of the local app once.
	authHintOnce sync.Once

	// life is the renewable access token and the previous box key
	// (lifecycle.go).
	life lifecycle

	// pullSig is the last pull signature, reused while the signed bytes
	// stay the same (pull).
	pullSig pullSigMemo

	mu     sync.Mutex
	health Health
}

// Health is the bridge's status, served on GET /health.
type Health struct {
	OK                  bool       `json:"ok"`
	BrokerURL           string     `json:"broker_url"`
	OrgID               string     `json:"org_id"`
	LastPollAt          *time.Time `json:"last_poll_at,omitempty"`
	LastPullMessages    int        `json:"last_pull_messages"`
	LastAckAt           *time.Time `json:"last_ack_at,omitempty"`
	LastOutboundAt      *time.Time `json:"last_outbound_at,omitempty"`
	LastError           string     `json:"last_error,omitempty"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	Backlog             int        `json:"backlog"`
	StreamBuffered      int        `json:"stream_buffered"`
	// StreamUnread is how many buffered events no SSE consumer has had yet.
	StreamUnread int `json:"stream_unread"`
	// StreamDropped counts events an SSE consumer missed: it resumed after
	// an id whose successors had already left the buffer.
	StreamDropped uint64 `json:"stream_dropped"`
	// BrokerDropped totals the copies the broker reported dropped for this
	// agent in events_dropped notices; BrokerDropReasons splits it by reason.
	BrokerDropped     uint64            `json:"broker_dropped"`
	BrokerDropReasons map[string]uint64 `json:"broker_drop_reasons,omitempty"`
	// SocketModeConnections is how many Socket Mode clients are connected.
	SocketModeConnections int        `json:"socket_mode_connections"`
	Delivered             uint64     `json:"delivered"`
	Duplicates            uint64     `json:"duplicates"`
	Poison                uint64     `json:"poison"`
	AccessTokenExpires    *time.Time `json:"access_token_expires_at,omitempty"`
}

const (
	sinkStream uint8 = 1 << iota
	sinkCustom
	sinkForward
)

// New validates cfg, opens the de-duplication store in cfg.StateDir (locking
// it against a second bridge) and returns a Bridge. Close it when done.
func New(cfg Config, logger *slog.Logger) (*Bridge, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	store, err := openDedupStore(cfg.StateDir, cfg.DedupTTL, cfg.Now)
	if err != nil {
		return nil, err
	}
	hub, err := openStreamHub(cfg, store, logger)
	if err != nil {
		store.Close()
		return nil, err
	}
	fc := cfg.ForwardClient
	if fc == nil {
		// A redirect is not a delivery: report it as a failure.
		fc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	b := &Bridge{
		cfg:           cfg,
		log:           logger,
		client:        newClient(cfg.BrokerURLs, cfg.HTTPClient),
		forwardClient: fc,
		shared:        cfg.BoxKey.Precompute(cfg.BrokerBoxKey),
		dedup:         store,
		hub:           hub,
		metrics:       newMetrics(),
		done:          make(chan struct{}),
		partial:       map[string]uint8{},
		retries:       map[string]*retryState{},
	}
	if b.sm, err = newSocketHub(b); err != nil {
		hub.close()
		store.Close()
		return nil, err
	}
	b.webapi = newWebAPI(b)
	b.initLifecycle()
	b.health.BrokerURL = b.client.current()
	b.health.OrgID = cfg.OrgID
	if !cfg.AccessTokenExpiresAt.IsZero() {
		t := cfg.AccessTokenExpiresAt
		b.health.AccessTokenExpires = &t
	}
	return b, nil
}

// Close releases the dedup store, wipes the cached shared key and ends
// open event streams. Call it after Run returned.
func (b *Bridge) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.done)
		b.sm.close() // disconnect Socket Mode clients so that they reconnect
		b.shared.Wipe()
		err = errors.Join(b.hub.close(), b.dedup.Close())
	})
	return err
}

// ErrReauthenticate is wrapped by Run's error when the broker refuses the
// bridge's credentials (expired token, unknown agent): the bridge must be
// registered again.
var ErrReauthenticate = errors.New("the broker no longer accepts this bridge's credentials")

func reauthError(cause error) error {
	return fmt.Errorf("%w (%v) — the access token expired or the agent was removed at the broker; run `bridge register` again with a new registration token from the broker's Slack install page, then restart `bridge run`", ErrReauthenticate, cause)
}

// isAuthFailure reports whether err means the credentials are dead.
func isAuthFailure(err error) bool {
	var be *BrokerError
	if !errors.As(err, &be) {
		return false
	}
	return be.Status == http.StatusUnauthorized || be.Status == http.StatusForbidden
}

// Run long-polls the broker until ctx is cancelled (then it finishes the
// delivery in progress, acks what was delivered and returns nil) or the
// broker refuses the credentials (an error wrapping ErrReauthenticate).
//
// Run must not be called twice at once on one Bridge.
func (b *Bridge) Run(ctx context.Context) error {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("bridge: Run is already running")
	}
	defer b.running.Store(false)
	// What was delivered is acked before Run returns, whatever ends it.
	defer func() {
		if err := b.waitAck(); err != nil {
			b.log.Warn("last ack failed; the broker redelivers those messages after their lease and the dedup log suppresses them", "err", err)
		}
	}()
	if exp := b.cfg.AccessTokenExpiresAt; !exp.IsZero() && !b.cfg.Now().Before(exp) {
		return reauthError(fmt.Errorf("access token expired at %s", exp.UTC().Format(time.RFC3339)))
	}
	if exp := b.cfg.AccessTokenExpiresAt; !exp.IsZero() && exp.Sub(b.cfg.Now()) < 7*24*time.Hour {
		b.log.Warn("access token expires soon: the bridge renews it on its own, so earlier renewals failed or the broker does not support agent.renew; check the broker, or run `bridge register` with a new registration token before then", "expires_at", exp.UTC().Format(time.RFC3339))
	}
	if err := b.checkBrokerKeys(ctx); err != nil {
		return err
	}
	defer b.startRenewal(ctx)()
	b.log.Info("bridge polling", "broker", b.client.current(), "org_id", b.cfg.OrgID,
		"wait_seconds", b.cfg.WaitSeconds, "max_messages", b.cfg.MaxMessages,
		"forward", b.cfg.ForwardURL != "", "stream", b.cfg.Stream)
	backoff := b.cfg.BackoffMin
	for {
		if ctx.Err() != nil {
			b.log.Info("bridge stopped")
			return nil
		}
		b.waitStreamRoom(ctx)
		b.waitSocketClient(ctx)
		err := b.cycle(ctx)
		if errors.Is(err, errStreamFull) || errors.Is(err, errNoSocketClient) {
			continue // not a failure: the next round waits for a consumer
		}
		if err == nil {
			backoff = b.cfg.BackoffMin
			b.setFailures(0, "")
			continue
		}
		if ctx.Err() != nil {
			b.log.Info("bridge stopped")
			return nil
		}
		if isAuthFailure(err) {
			b.log.Error("broker refused the bridge's credentials", "err", err)
			return reauthError(err)
		}
		if errors.Is(err, ErrBrokerKeysChanged) {
			b.log.Error("broker keys changed; stopping without acking", "err", err)
			return err
		}
		n := b.setFailures(1, err.Error())
		var be *BrokerError
		if errors.As(err, &be) && be.Contains(protocol.ErrTimestampWindow) {
			b.log.Error("broker says our clock is off by more than 5 minutes; fix the system clock (NTP)", "err", err)
		} else {
			b.log.Warn("poll cycle failed", "err", err, "consecutive_failures", n, "retry_in", backoff)
		}
		wait := jitter(backoff)
		if ra := retryAfter(err); ra > wait {
			wait = min(ra, 5*time.Minute)
		}
		if !sleepCtx(ctx, wait) {
			continue
		}
		backoff = min(backoff*2, b.cfg.BackoffMax)
	}
}

// ErrBrokerKeysChanged is returned by Run when the broker publishes other
// public keys than the configuration holds. Polling anyway would treat every
// message as poison (bad signature) and ack it unread.
var ErrBrokerKeysChanged = errors.New("the broker's public keys differ from the ones saved at registration")

// checkBrokerKeys compares the broker's published keys with the configured
// ones. An unreachable broker is not an error here (the poll loop retries).
func (b *Bridge) checkBrokerKeys(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	pk, err := b.client.brokerPubkey(cctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("could not fetch the broker's public keys at start; polling anyway", "err", err)
		}
		return nil
	}
	if pk.BrokerPubkey != b.cfg.BrokerBoxKey.String() || pk.BrokerSigningPubkey != b.cfg.BrokerSigningKey.String() {
		return fmt.Errorf("%w (broker %s) — not polling, because every message would fail verification and be dropped; if the broker's keys were rotated on purpose, run `bridge register` again with a new registration token; otherwise check the broker URL", ErrBrokerKeysChanged, b.client.current())
	}
	return nil
}

// retryAfter returns the broker's Retry-After (seconds form), or 0.
func retryAfter(err error) time.Duration {
	var be *BrokerError
	if !errors.As(err, &be) || be.RetryAfter == "" {
		return 0
	}
	n, perr := strconv.Atoi(strings.TrimSpace(be.RetryAfter))
	if perr != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// jitter returns d ± 20 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*4/5 + rand.N(d*2/5+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// setFailures adds delta (0 resets) to the consecutive failure count.
func (b *Bridge) setFailures(delta int, lastErr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if delta == 0 {
		b.health.ConsecutiveFailures = 0
	} else {
		b.health.ConsecutiveFailures += delta
		b.health.LastError = lastErr
	}
	b.metrics.failures.Set(float64(b.health.ConsecutiveFailures))
	return b.health.ConsecutiveFailures
}

// errDelivery marks a cycle that failed at local delivery.
var errDelivery = errors.New("local delivery failed")

// cycle is one pull → process → ack round. After a delivery failure the
// next cycles retry the leftover messages locally, in order, instead of
// pulling, for up to Config.LocalRetryWindow. Not pulling keeps the
// broker's delivery count of those messages unchanged (an ack by id works
// after the lease lapsed), so a local app that is down for a while does not
// push them to the dead-letter list; after the window they are pulled
// again, which counts a delivery, so a message the app always rejects ends
// up dead-lettered instead of blocking the inbox forever.
func (b *Bridge) cycle(ctx context.Context) error {
	var msgs []protocol.InboxMessage
	pulledAt := b.pendingAt
	if len(b.pending) > 0 && b.cfg.Now().Sub(b.pendingAt) < b.cfg.LocalRetryWindow {
		msgs = b.pending
	} else {
		var err error
		msgs, err = b.pull(ctx)
		if err != nil {
			b.metrics.pullErrors.Inc()
			return err
		}
		pulledAt = b.cfg.Now()
	}
	b.pending = nil
	if len(msgs) == 0 {
		if b.acking != nil && isClosed(b.acking.done) {
			return b.waitAck() // report a failed ack without waiting for traffic
		}
		return nil
	}
	ackIDs, rest, derr := b.process(ctx, msgs)
	if derr != nil {
		b.pending, b.pendingAt = rest, pulledAt
		if errors.Is(derr, errStreamFull) || errors.Is(derr, errNoSocketClient) {
			// Waiting for a consumer is not a delivery failure: keep the
			// rest here however long that takes (no pull, no redelivery
			// count at the broker).
			b.pendingAt = b.cfg.Now()
		}
	}
	// The previous batch's ack must have been answered before this one is
	// sent (one ack in flight, so acks cannot pile up against a slow
	// broker); this batch's ack then overlaps the next pull. process
	// returned only after the deliveries were durable (dedup log and
	// stream spool synced), so acking now cannot lose an event.
	aerr := b.waitAck()
	if len(ackIDs) > 0 {
		b.startAck(ctx, ackIDs)
	}
	if aerr != nil {
		return aerr
	}
	return derr
}

// pendingAck is one ack call in flight.
type pendingAck struct {
	done chan struct{}
	err  error
}

// startAck sends the ack of ids in the background. Acks are sent even when
// shutting down (ctx cancelled): what was delivered must not come back.
func (b *Bridge) startAck(ctx context.Context, ids []string) {
	p := &pendingAck{done: make(chan struct{})}
	b.acking = p
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	go func() {
		defer close(p.done)
		defer cancel()
		p.err = b.ack(actx, ids)
	}()
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitAck waits for the ack in flight, if any, and returns its error.
// A failed ack loses nothing: the messages come back after their lease and
// the dedup store suppresses them then.
func (b *Bridge) waitAck() error {
	p := b.acking
	if p == nil {
		return nil
	}
	<-p.done
	b.acking = nil
	if p.err != nil {
		b.metrics.ackErrors.Inc()
		return fmt.Errorf("ack: %w", p.err)
	}
	return nil
}

func (b *Bridge) pull(ctx context.Context) ([]protocol.InboxMessage, error) {
	ts := b.cfg.Now().Unix()
	maxM, wait := b.cfg.MaxMessages, b.cfg.WaitSeconds
	if b.backlog {
		maxM = b.cfg.BacklogMaxMessages
	}
	sig, _ := b.pullSig.signature(b.cfg.SigningKey, protocol.PullSigningBytes(b.cfg.OrgID, ts, maxM, wait))
	body, err := marshal(protocol.PullRequest{
		OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, ProtocolVersion: protocol.Version,
		MaxMessages: &maxM, WaitSeconds: &wait, Timestamp: ts, Signature: sig,
		Meta: b.pullMeta(),
	})
	if err != nil {
		return nil, err
	}
	var resp pullAnswer
	if err := b.client.do(ctx, http.MethodPost, "/api/inbox/pull", b.accessToken(), body, time.Duration(wait+15)*time.Second, &resp); err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	now := b.cfg.Now()
	b.mu.Lock()
	b.health.LastPollAt = &now
	b.health.LastPullMessages = len(resp.Messages)
	b.health.BrokerURL = b.client.current()
	b.mu.Unlock()
	b.metrics.lastPoll.Set(float64(now.Unix()))
	b.afterPull(len(resp.Messages))
	b.backlog = len(resp.Messages) >= maxM
	return resp.Messages, nil
}

// pullSigMemo holds the last inbox.pull signature the bridge made. A pull
// has no nonce (protocol §4.4): one that follows the previous within the
// same second with the same max_messages and wait_seconds signs the same
// bytes, and Ed25519 signatures are deterministic, so signing again would
// give the same signature. It is reused only when the signed bytes are
// exactly the previous ones and the signing key has the same public key
// (a key change signs afresh). Acks and every other request are signed
// each time. Safe for concurrent use.
type pullSigMemo struct {
	mu     sync.Mutex
	key    crypto.SigningPublicKey
	signed []byte
	sig    string // standard base64
}

// signature returns the standard-base64 signature of signed by k, and
// whether it is the remembered one (no new signature was made).
func (m *pullSigMemo) signature(k *crypto.SigningKey, signed []byte) (string, bool) {
	pub := k.Public()
	m.mu.Lock()
	if m.sig != "" && m.key == pub && bytes.Equal(m.signed, signed) {
		sig := m.sig
		m.mu.Unlock()
		return sig, true
	}
	m.mu.Unlock()
	sig := protocol.EncodeSignature(k.Sign(signed))
	m.mu.Lock()
	m.key, m.signed, m.sig = pub, signed, sig
	m.mu.Unlock()
	return sig, false
}

func (b *Bridge) ack(ctx context.Context, ids []string) error {
	ts := b.cfg.Now().Unix()
	sig := b.cfg.SigningKey.Sign(protocol.AckSigningBytes(b.cfg.OrgID, ts, ids))
	body, err := marshal(protocol.AckRequest{
		OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, ProtocolVersion: protocol.Version,
		MessageIDs: ids, Timestamp: ts, Signature: protocol.EncodeSignature(sig),
	})
	if err != nil {
		return err
	}
	var resp protocol.AckResponse
	if err := b.client.do(ctx, http.MethodPost, "/api/inbox/ack", b.accessToken(), body, 30*time.Second, &resp); err != nil {
		return err
	}
	now := b.cfg.Now()
	b.mu.Lock()
	b.health.LastAckAt = &now
	b.mu.Unlock()
	b.metrics.acked.Add(float64(len(ids)))
	b.log.Debug("acked", "count", len(ids), "removed", resp.Acked)
	return nil
}

func (b *Bridge) poison(reason string, m *protocol.InboxMessage, err error) {
	b.metrics.poison.WithLabelValues(reason).Inc()
	b.mu.Lock()
	b.health.Poison++
	b.mu.Unlock()
	attrs := []any{"reason", reason, "message_id", truncate(m.MessageID, 64), "org_id", truncate(m.OrgID, 64)}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	b.log.Warn("poison message acked without delivery", attrs...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Send relays one outbound call to the broker: it encrypts body with
// crypto_box to the broker (cached shared key), signs the request and
// returns the broker's answer. A broker refusal is a *BrokerError carrying
// the broker's status and error text.
func (b *Bridge) Send(ctx context.Context, action string, routing protocol.Routing, body protocol.SendBody) (*protocol.SendResponse, error) {
	pt, err := marshalPlain(body)
	if err != nil {
		return nil, err
	}
	ct, nonce, err := b.shared.Seal(pt)
	crypto.Wipe(pt)
	if err != nil {
		return nil, err
	}
	ts := b.cfg.Now().Unix()
	encBody := base64.StdEncoding.EncodeToString(ct)
	nonceB64 := base64.StdEncoding.EncodeToString(nonce[:])
	sig := b.cfg.SigningKey.Sign(protocol.SendSigningBytes(b.cfg.OrgID, action, ts, encBody, nonceB64, routing))
	req, err := marshal(protocol.SendRequest{
		OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, Action: action, Routing: routing,
		EncryptedBody: encBody, Nonce: nonceB64, Timestamp: ts, Signature: protocol.EncodeSignature(sig),
	})
	if err != nil {
		return nil, err
	}
	var resp protocol.SendResponse
	err = b.client.do(ctx, http.MethodPost, "/api/send", b.accessToken(), req, 30*time.Second, &resp)
	status := "200"
	if err != nil {
		var be *BrokerError
		if errors.As(err, &be) {
			status = fmt.Sprint(be.Status)
		} else {
			status = "unreachable"
		}
	}
	b.metrics.outbound.WithLabelValues(action, status).Inc()
	now := b.cfg.Now()
	b.mu.Lock()
	b.health.LastOutboundAt = &now
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("send %s: %w", action, err)
	}
	return &resp, nil
}

// Health returns the bridge's current status.
func (b *Bridge) Health() Health {
	st := b.hub.stats()
	b.mu.Lock()
	h := b.health
	h.BrokerDropReasons = maps.Clone(b.health.BrokerDropReasons)
	b.mu.Unlock()
	h.StreamBuffered = st.buffered
	h.StreamUnread = st.unread
	h.StreamDropped = st.missed
	h.Backlog = st.unread
	h.SocketModeConnections = b.sm.count()
	h.OK = h.ConsecutiveFailures == 0
	return h
}

package broker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

const (
	testClientID      = "cid-123"
	testClientSecret  = "client-secret-xyz"
	testSigningSecret = "signing-secret-abc"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testClock is a real clock plus an adjustable offset, or a frozen time.
type testClock struct {
	offset atomic.Int64
	frozen atomic.Int64 // unix nanoseconds; 0 = running
}

func (c *testClock) Now() time.Time {
	if f := c.frozen.Load(); f != 0 {
		return time.Unix(0, f).Add(time.Duration(c.offset.Load()))
	}
	return time.Now().Add(time.Duration(c.offset.Load()))
}

func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Freeze stops the clock at its current reading.
func (c *testClock) Freeze() { c.frozen.Store(time.Now().UnixNano()) }

// Storage engines the harness runs the broker on.
const (
	engineRedis = "redis" // the real test Redis ($REDIS_URL), replicas share it
	engineBolt  = "bolt"  // the embedded bbolt engine in a temp dir (one process)
)

// engines lists both, for handler tests that run on each (forEachEngine).
var engines = []string{engineRedis, engineBolt}

// forEachEngine runs f as a parallel subtest per storage engine, with the
// harness option that selects it.
func forEachEngine(t *testing.T, f func(t *testing.T, engine harnessOpt)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) {
			t.Parallel()
			f(t, withEngine(e))
		})
	}
}

// harness is a broker (one or more replicas) on a storage engine (the real
// local Redis unless withEngine says otherwise) with a fake Slack.
type harness struct {
	t        testing.TB
	fake     *slackfake.Fake
	slackSrv *httptest.Server
	rdb      *redis.Client
	prefix   string
	keys     Keys
	cfg      Config
	clock    *testClock
	logs     *syncBuffer
	qopts    queue.Options
	wrapQ    func(queue.Store) queue.Store // wraps each replica's queue (fault injection)
	wrapSt   func(state.Store) state.Store // wraps the state of replicas started next (fault injection)
	// slackMW, when set, wraps the fake Slack's handler (hooks around calls).
	slackMW func(http.Handler) http.Handler

	engine string           // engineRedis (default) or engineBolt
	bolt   *boltstore.Store // the embedded engine every replica shares (engineBolt)

	// first replica
	st  state.Store
	q   queue.Store
	srv *Server
	reg *prometheus.Registry
	url string
}

type harnessOpt func(*harness)

// withEngine selects the storage engine (engineRedis, engineBolt).
func withEngine(e string) harnessOpt { return func(h *harness) { h.engine = e } }

func withConfig(f func(*Config)) harnessOpt { return func(h *harness) { f(&h.cfg) } }
func withQueue(o queue.Options) harnessOpt  { return func(h *harness) { h.qopts = o } }
func withQueueWrapper(f func(queue.Store) queue.Store) harnessOpt {
	return func(h *harness) { h.wrapQ = f }
}

func newTestKeys(t testing.TB) Keys {
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := crypto.RandomBytes(32)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := crypto.NewKeyring(map[uint32][]byte{1: mk})
	if err != nil {
		t.Fatal(err)
	}
	return Keys{Box: box, Signing: sig, Keyring: kr}
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, clock: &testClock{}, logs: &syncBuffer{}, engine: engineRedis}
	h.fake = slackfake.New(slackfake.Options{ClientID: testClientID, ClientSecret: testClientSecret})
	h.slackSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.slackMW != nil {
			h.slackMW(h.fake).ServeHTTP(w, r)
			return
		}
		h.fake.ServeHTTP(w, r)
	}))
	t.Cleanup(h.slackSrv.Close)
	h.rdb, h.prefix = testRedis(t)
	h.keys = newTestKeys(t)
	h.cfg = Config{
		PublicURL:          "http://broker.invalid", // replaced by the test server URL below
		SlackClientID:      testClientID,
		SlackClientSecret:  testClientSecret,
		SlackSigningSecret: testSigningSecret,
		SlackAPIURL:        slackfake.APIURL(h.slackSrv.URL),
		SlackAuthorizeURL:  slackfake.AuthorizeURL(h.slackSrv.URL),
		SendRate:           RateLimit{Rate: 1000, Burst: 1000},
		Now:                h.clock.Now,
	}
	for _, o := range opts {
		o(h)
	}
	if h.engine == engineBolt {
		h.cfg.CompactStored = true // as cmd/broker configures the embedded store
		bs, err := boltstore.Open(t.TempDir(), h.qopts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bs.Close() })
		h.bolt = bs
	}
	h.srv, h.st, h.q, h.reg, h.url = h.newReplica()
	return h
}

// newReplica starts another broker instance on the same store: the same
// Redis and prefix, or (engineBolt) the same embedded store, as a second
// server in one process.
func (h *harness) newReplica() (*Server, state.Store, queue.Store, *prometheus.Registry, string) {
	t := h.t
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var st state.Store
	var q queue.Store
	if h.engine == engineBolt {
		st, q = h.bolt.State, h.bolt.Inbox
	} else {
		rs, err := redisstore.Open(h.rdb, h.prefix, redisstore.InboxOptions{Options: h.qopts, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rs.Close() })
		st, q = rs, rs.Inbox
	}
	var err error
	var srv *Server
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.Handler().ServeHTTP(w, r)
	}))
	ts.Start()
	t.Cleanup(ts.Close)
	cfg := h.cfg
	if cfg.PublicURL == "http://broker.invalid" {
		cfg.PublicURL = ts.URL
	}
	reg := prometheus.NewRegistry()
	var qs queue.Store = q
	if h.wrapQ != nil {
		qs = h.wrapQ(q)
	}
	var sst state.Store = st
	if h.wrapSt != nil {
		sst = h.wrapSt(st)
	}
	srv, err = New(cfg, sst, qs, h.keys, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv, st, q, reg, ts.URL
}

// do sends a request to base and returns status, headers and body.
func do(t testing.TB, method, u, bearer string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func errorText(t testing.TB, body []byte) string {
	t.Helper()
	var e protocol.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not JSON: %q", body)
	}
	if e.OK {
		t.Fatalf("error body has ok=true: %s", body)
	}
	return e.Error
}

var tokenPattern = regexp.MustCompile(`--registration-token ([A-Za-z0-9_-]+)`)
var orgPattern = regexp.MustCompile(`--org-id ([A-Za-z0-9._:-]+)`)

// install runs the OAuth flow through the fake Slack consent screen and
// returns the org id and the registration token from the result page.
func (h *harness) install(inst slackfake.Install) (org, regToken string) {
	h.t.Helper()
	h.fake.QueueInstall(inst)
	status, page := h.installFlow(h.url)
	if status != http.StatusOK {
		h.t.Fatalf("install: status %d: %s", status, page)
	}
	m := tokenPattern.FindStringSubmatch(page)
	o := orgPattern.FindStringSubmatch(page)
	if m == nil || o == nil {
		h.t.Fatalf("install page lacks the register command: %s", page)
	}
	return o[1], m[1]
}

// installFlow follows /slack/install → fake authorize → callback.
func (h *harness) installFlow(base string) (int, string) {
	h.t.Helper()
	client := &http.Client{}
	resp, err := client.Get(base + "/slack/install")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, html.UnescapeString(string(b))
}

// agentClient is a test bridge.
type agentClient struct {
	h     *harness
	base  string
	org   string
	box   *crypto.BoxKeyPair
	sig   *crypto.SigningKey
	token string
}

func (h *harness) newAgentKeys(org string) *agentClient {
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		h.t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		h.t.Fatal(err)
	}
	return &agentClient{h: h, base: h.url, org: org, box: box, sig: sig}
}

func (c *agentClient) registerBody(regToken string) []byte {
	b, _ := json.Marshal(protocol.RegisterRequest{OrgID: c.org, WorkspaceID: c.org,
		ServerPubkey: c.box.Public.String(), ServerSigningPubkey: c.sig.Public().String(), RegistrationToken: regToken})
	return b
}

func (c *agentClient) tryRegister(regToken string) (int, []byte) {
	status, _, body := do(c.h.t, http.MethodPost, c.base+"/api/register", "", c.registerBody(regToken), nil)
	return status, body
}

// register registers a fresh agent for org and returns it.
func (h *harness) register(org, regToken string) *agentClient {
	h.t.Helper()
	c := h.newAgentKeys(org)
	status, body := c.tryRegister(regToken)
	if status != http.StatusOK {
		h.t.Fatalf("register: %d %s", status, body)
	}
	var rr protocol.RegisterResponse
	if err := json.Unmarshal(body, &rr); err != nil || !rr.OK || rr.BrokerAccessToken == "" {
		h.t.Fatalf("register response: %s", body)
	}
	if rr.BrokerPubkey != h.keys.Box.Public.String() || rr.BrokerSigningPubkey != h.keys.Signing.Public().String() {
		h.t.Fatal("register returned other broker keys")
	}
	if _, err := time.Parse(time.RFC3339, rr.BrokerAccessTokenExpiresAt); err != nil {
		h.t.Fatalf("expires_at: %v", err)
	}
	c.token = rr.BrokerAccessToken
	return c
}

func (c *agentClient) now() int64 { return c.h.clock.Now().Unix() }

func (c *agentClient) pullBody(maxN, wait int, ts int64) []byte {
	sig := c.sig.Sign(protocol.PullSigningBytes(c.org, ts, maxN, wait))
	b, _ := json.Marshal(protocol.PullRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		MaxMessages: &maxN, WaitSeconds: &wait, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) pullRaw(body []byte) (int, []byte) {
	status, _, b := do(c.h.t, http.MethodPost, c.base+"/api/inbox/pull", c.token, body, nil)
	return status, b
}

// pull pulls and opens every message, checking the broker signature.
func (c *agentClient) pull(maxN, wait int) []openedMessage {
	c.h.t.Helper()
	status, b := c.pullRaw(c.pullBody(maxN, wait, c.now()))
	if status != http.StatusOK {
		c.h.t.Fatalf("pull: %d %s", status, b)
	}
	return c.open(b)
}

type openedMessage struct {
	ID  string
	Env *protocol.Envelope
	Raw protocol.InboxMessage
}

func (c *agentClient) open(b []byte) []openedMessage {
	c.h.t.Helper()
	var pr protocol.PullResponse
	if err := json.Unmarshal(b, &pr); err != nil || !pr.OK {
		c.h.t.Fatalf("pull response: %s", b)
	}
	var out []openedMessage
	for _, m := range pr.Messages {
		env, pt, err := protocol.OpenEnvelope(m, c.h.keys.Signing.Public(), c.box)
		if err != nil {
			c.h.t.Fatalf("open message %s: %v", m.MessageID, err)
		}
		crypto.Wipe(pt)
		if m.OrgID != c.org || m.WorkspaceID != c.org {
			c.h.t.Fatalf("message for org %q, want %q", m.OrgID, c.org)
		}
		out = append(out, openedMessage{ID: m.MessageID, Env: env, Raw: m})
	}
	return out
}

func (c *agentClient) ackBody(ids []string, ts int64) []byte {
	sig := c.sig.Sign(protocol.AckSigningBytes(c.org, ts, ids))
	b, _ := json.Marshal(protocol.AckRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		MessageIDs: ids, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) ack(ids ...string) int {
	c.h.t.Helper()
	status, _, b := do(c.h.t, http.MethodPost, c.base+"/api/inbox/ack", c.token, c.ackBody(ids, c.now()), nil)
	if status != http.StatusOK {
		c.h.t.Fatalf("ack: %d %s", status, b)
	}
	var ar protocol.AckResponse
	if err := json.Unmarshal(b, &ar); err != nil || !ar.OK {
		c.h.t.Fatalf("ack response %s", b)
	}
	return ar.Acked
}

// sendBody encrypts body to the broker and signs the send request.
func (c *agentClient) sendBody(action string, rt protocol.Routing, body any, ts int64) []byte {
	pt, _ := json.Marshal(body)
	ct, nonce, err := c.box.Precompute(c.h.keys.Box.Public).Seal(pt)
	if err != nil {
		c.h.t.Fatal(err)
	}
	return c.signSend(action, rt, base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(nonce[:]), ts)
}

func (c *agentClient) signSend(action string, rt protocol.Routing, ct, nonce string, ts int64) []byte {
	sig := c.sig.Sign(protocol.SendSigningBytes(c.org, action, ts, ct, nonce, rt))
	b, _ := json.Marshal(protocol.SendRequest{OrgID: c.org, WorkspaceID: c.org, Action: action, Routing: rt,
		EncryptedBody: ct, Nonce: nonce, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) sendRaw(body []byte) (int, http.Header, []byte) {
	return do(c.h.t, http.MethodPost, c.base+"/api/send", c.token, body, nil)
}

func (c *agentClient) send(action string, rt protocol.Routing, body any) protocol.SendResponse {
	c.h.t.Helper()
	status, _, b := c.sendRaw(c.sendBody(action, rt, body, c.now()))
	if status != http.StatusOK {
		c.h.t.Fatalf("send %s: %d %s", action, status, b)
	}
	var sr protocol.SendResponse
	if err := json.Unmarshal(b, &sr); err != nil || !sr.OK {
		c.h.t.Fatalf("send response %s", b)
	}
	return sr
}

func (c *agentClient) unregisterBody(ts int64) []byte {
	sig := c.sig.Sign(protocol.UnregisterSigningBytes(c.org, ts))
	b, _ := json.Marshal(protocol.UnregisterRequest{OrgID: c.org, WorkspaceID: c.org, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

// slackPost posts a signed Slack request to path on base.
func (h *harness) slackPost(base, path string, body []byte, contentType string, ts time.Time) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	slackfake.SignRequest(req, testSigningSecret, ts, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var eventSeq atomic.Int64

// eventBody returns an Events API event_callback for team with a message
// text and a fresh event id.
func eventBody(team, text string) ([]byte, string) {
	id := fmt.Sprintf("Ev%08d", eventSeq.Add(1))
	b, _ := json.Marshal(map[string]any{
		"token": "legacy", "team_id": team, "api_app_id": "A0FAKE001", "type": "event_callback",
		"event_id": id, "event_time": 1771465000,
		"event":          map[string]any{"type": "app_mention", "user": "U1", "text": text, "ts": "1771465000.000100", "channel": "C1"},
		"authorizations": []map[string]any{{"team_id": team, "user_id": "U0FAKEBOT", "is_bot": true, "is_enterprise_install": false}},
	})
	return b, id
}

// postEvent posts an event and requires 200.
func (h *harness) postEvent(base string, body []byte) {
	h.t.Helper()
	status, b := h.slackPost(base, "/slack/events", body, "application/json", time.Now())
	if status != http.StatusOK {
		h.t.Fatalf("event: %d %s", status, b)
	}
}

// counterValue reads a counter or gauge.
func counterValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// storeDump returns what the engine holds: every Redis key under the
// harness prefix with its DUMP bytes and readable contents, or the bytes of
// the embedded engine's files.
func (h *harness) storeDump() map[string]string {
	h.t.Helper()
	if h.engine == engineBolt {
		out := map[string]string{}
		for _, name := range []string{boltstore.StateFileName, boltstore.InboxFileName} {
			path := filepath.Join(h.bolt.Dir(), name)
			b, err := os.ReadFile(path)
			if err != nil {
				h.t.Fatal(err)
			}
			out[path] = string(b)
		}
		return out
	}
	return h.redisDump()
}

// redisDump returns every key under the harness prefix with its DUMP bytes
// and, by type, its readable contents.
func (h *harness) redisDump() map[string]string {
	h.t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, k := range scanKeys(h.t, h.rdb, h.prefix) {
		var sb strings.Builder
		d, err := h.rdb.Dump(ctx, k).Result()
		if err == nil {
			sb.WriteString(d)
		}
		switch typ, _ := h.rdb.Type(ctx, k).Result(); typ {
		case "string":
			v, _ := h.rdb.Get(ctx, k).Result()
			sb.WriteString(v)
		case "hash":
			for f, v := range h.rdb.HGetAll(ctx, k).Val() {
				sb.WriteString(f + "=" + v + "\n")
			}
		case "set":
			sb.WriteString(strings.Join(h.rdb.SMembers(ctx, k).Val(), "\n"))
		case "list":
			sb.WriteString(strings.Join(h.rdb.LRange(ctx, k, 0, -1).Val(), "\n"))
		case "zset":
			sb.WriteString(strings.Join(h.rdb.ZRange(ctx, k, 0, -1).Val(), "\n"))
		case "stream":
			for _, m := range h.rdb.XRange(ctx, k, "-", "+").Val() {
				sb.WriteString(fmt.Sprint(m.Values))
			}
		}
		out[k] = sb.String()
	}
	return out
}

// assertNoSecrets fails when any canary appears in the store (Redis keys
// or bbolt files) or the logs, raw or in a common encoding.
func (h *harness) assertNoSecrets(canaries ...string) {
	h.t.Helper()
	dump := h.storeDump()
	if len(dump) == 0 {
		h.t.Fatal("store dump is empty; the scan found nothing to check")
	}
	logs := h.logs.String()
	if logs == "" {
		h.t.Fatal("no logs captured")
	}
	for _, c := range canaries {
		forms := []string{c, base64.StdEncoding.EncodeToString([]byte(c)), base64.RawURLEncoding.EncodeToString([]byte(c)),
			url.QueryEscape(c), strconv.Quote(c)}
		for _, f := range forms {
			for k, v := range dump {
				if strings.Contains(v, f) {
					h.t.Errorf("canary %q found in the store at %s", c, k)
				}
			}
			if strings.Contains(logs, f) {
				h.t.Errorf("canary %q found in logs", c)
			}
		}
	}
}

func queueOptions(capacity int) queue.Options { return queue.Options{Capacity: capacity} }

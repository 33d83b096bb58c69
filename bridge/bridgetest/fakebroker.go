// Package bridgetest provides a scripted broker for testing bridges: an
// httptest server that speaks sealrelay protocol 2026-02-1 with the real
// protocol and crypto packages (register, broker-pubkey, long-poll pull of
// sealed and signed envelopes, ack, send with crypto_box bodies, unregister)
// and lets a test inject failures. It also serves the sealrelay extensions
// POST /api/call (§8.1) with scriptable Slack answers and POST
// /api/inbox/respond (§8.2), recording the decrypted answers.
package bridgetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// RegistrationToken is the token a FakeBroker accepts by default.
const RegistrationToken = "test-registration-token-0123456789abcdef"

// Sent is one /api/send call as the broker decrypted it.
type Sent struct {
	Action  string
	Routing protocol.Routing
	Body    protocol.SendBody
	Nonce   string
}

// Failure is a scripted error answer.
type Failure struct {
	Status  int
	Message string
	Header  http.Header
}

type queued struct {
	msg   protocol.InboxMessage
	acked bool
	// leasedUntil is when the last pull's lease of msg lapses.
	leasedUntil time.Time
}

// DefaultLease is how long a pulled message is leased to the agent (not
// handed out again unless acked first), as the real broker's 30 seconds.
const DefaultLease = 30 * time.Second

// FakeBroker is a scripted broker. Its fields are guarded by its mutex; use
// the methods.
type FakeBroker struct {
	OrgID       string
	BoxKey      *crypto.BoxKeyPair
	SigningKey  *crypto.SigningKey
	AccessToken string

	t      testing.TB
	server *httptest.Server
	addr   string

	mu            sync.Mutex
	agentBox      crypto.BoxPublicKey
	agentSign     crypto.SigningPublicKey
	registered    bool
	regUsed       bool
	tokenExpired  bool
	queue         []*queued
	seq           int
	changed       chan struct{}
	acks          [][]string
	handedOut     map[string]int
	sends         []Sent
	pulls         int
	pullsInFlight int // pull handlers running (a stopped bridge's may linger until its connection's close is seen)
	nonces        map[string]bool
	lease         time.Duration
	pullSizes     []int
	ackGate       chan struct{} // while set, acks wait for it to close
	acksHeld      int           // acks that arrived and wait at the gate

	// Scripted failures: the next call of that kind answers with it.
	registerFailure *Failure
	pullFailures    []Failure
	ackFailures     []Failure
	sendAnswer      *Failure
	dropAcks        int
	registerPubkey  string // when set, /api/register answers this broker_pubkey

	calls      []Call
	callAnswer func(Call) CallAnswer

	responds           []Respond
	respondUndelivered bool
	pullMetas          []json.RawMessage

	// life is the agent.renew / agent.rekey state (lifecycle.go).
	life lifecycleState
}

// New starts a FakeBroker for orgID on a loopback port. It is closed when
// the test ends.
func New(t testing.TB, orgID string) *FakeBroker {
	t.Helper()
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sign, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &FakeBroker{OrgID: orgID, BoxKey: box, SigningKey: sign, AccessToken: "fake-access-token-" + orgID,
		t: t, changed: make(chan struct{}), nonces: map[string]bool{}, handedOut: map[string]int{}, lease: DefaultLease}
	f.start("127.0.0.1:0")
	t.Cleanup(f.Close)
	return f
}

func (f *FakeBroker) start(addr string) {
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // port still in TIME_WAIT after Restart
	}
	if err != nil {
		f.t.Fatalf("fake broker listen: %v", err)
	}
	s := httptest.NewUnstartedServer(f.handler())
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	f.server = s
	f.addr = ln.Addr().String()
}

// URL returns the broker's base URL.
func (f *FakeBroker) URL() string { return "http://" + f.addr }

// Close stops the server.
func (f *FakeBroker) Close() {
	if f.server != nil {
		f.server.CloseClientConnections()
		f.server.Close()
		f.server = nil
	}
}

// Restart stops the server (dropping open long polls) and starts it again
// on the same address, keeping its state.
func (f *FakeBroker) Restart() {
	f.Close()
	f.start(f.addr)
}

// SetAgent registers an agent directly, bypassing /api/register.
func (f *FakeBroker) SetAgent(box crypto.BoxPublicKey, sign crypto.SigningPublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agentBox, f.agentSign, f.registered = box, sign, true
}

// RotateSigningKey gives the broker a new signing key: later messages are
// signed with it and /api/broker-pubkey publishes it. Read SigningKey only
// before calling it.
func (f *FakeBroker) RotateSigningKey() {
	k, err := crypto.GenerateSigningKey()
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.SigningKey = k
}

// ExpireToken makes every later authenticated call answer 401.
func (f *FakeBroker) ExpireToken() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenExpired = true
}

// FailRegister makes the next /api/register answer with status and message.
func (f *FakeBroker) FailRegister(status int, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registerFailure = &Failure{Status: status, Message: message}
}

// AnswerRegisterWithPubkey makes /api/register name a different broker box
// key than /api/broker-pubkey (a tampering scenario).
func (f *FakeBroker) AnswerRegisterWithPubkey(b64 string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registerPubkey = b64
}

// FailPulls queues failures for the next pulls.
func (f *FakeBroker) FailPulls(fs ...Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pullFailures = append(f.pullFailures, fs...)
}

// SetLease sets how long a pulled message stays leased (DefaultLease): a
// pull hands out only the unacked messages whose lease lapsed. Tests of
// redelivery after a lost ack use a short one.
func (f *FakeBroker) SetLease(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lease = d
}

// ExpireLeases ends the lease of every unacked message now, as if the
// lease time had passed: the next pull hands them out again.
func (f *FakeBroker) ExpireLeases() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, q := range f.queue {
		q.leasedUntil = time.Time{}
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

// HoldAcks makes acks wait, unanswered and not applied, until release is
// called; AcksHeld counts the waiting ones.
func (f *FakeBroker) HoldAcks() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gate := make(chan struct{})
	f.ackGate = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.ackGate = nil
			f.mu.Unlock()
			close(gate)
		})
	}
}

// AcksHeld returns how many acks wait at the HoldAcks gate.
func (f *FakeBroker) AcksHeld() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acksHeld
}

// DropAcks makes the next n acks abort the connection without acking (as if
// the bridge died before its ack arrived).
func (f *FakeBroker) DropAcks(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropAcks = n
}

// AnswerSends makes every later /api/send answer with this failure (nil: ok).
func (f *FakeBroker) AnswerSends(fl *Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sendAnswer = fl
}

// Enqueue seals env to the agent, signs it and queues it. It returns the
// message id.
func (f *FakeBroker) Enqueue(env protocol.Envelope) string {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.registered {
		f.t.Fatal("fake broker: Enqueue before an agent is registered")
	}
	if env.BrokerTimestamp == 0 {
		env.BrokerTimestamp = time.Now().Unix()
	}
	pt, err := json.Marshal(env)
	if err != nil {
		f.t.Fatal(err)
	}
	f.seq++
	id := fmt.Sprintf("m-%d", f.seq)
	m, err := protocol.SealEnvelope(pt, f.OrgID, id, env.BrokerTimestamp, f.agentBox, f.SigningKey)
	if err != nil {
		f.t.Fatal(err)
	}
	f.pushLocked(m)
	return id
}

// EnqueueRaw queues m as is (for poison messages). An empty MessageID gets
// a fresh one, which is returned.
func (f *FakeBroker) EnqueueRaw(m protocol.InboxMessage) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.MessageID == "" {
		f.seq++
		m.MessageID = fmt.Sprintf("m-%d", f.seq)
	}
	f.pushLocked(m)
	return m.MessageID
}

// Seal returns a valid sealed and signed message for env without queueing
// it, for building poison variants.
func (f *FakeBroker) Seal(env protocol.Envelope, id string) protocol.InboxMessage {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	pt, err := json.Marshal(env)
	if err != nil {
		f.t.Fatal(err)
	}
	m, err := protocol.SealEnvelope(pt, f.OrgID, id, env.BrokerTimestamp, f.agentBox, f.SigningKey)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *FakeBroker) pushLocked(m protocol.InboxMessage) {
	f.queue = append(f.queue, &queued{msg: m})
	close(f.changed)
	f.changed = make(chan struct{})
}

// Acked returns the ids acked so far, in order.
func (f *FakeBroker) Acked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.acks {
		out = append(out, a...)
	}
	return out
}

// AckBatches returns the ack calls' id lists.
func (f *FakeBroker) AckBatches() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.acks...)
}

// Pending returns the number of unacked messages.
func (f *FakeBroker) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, q := range f.queue {
		if !q.acked {
			n++
		}
	}
	return n
}

// PullsInFlight returns how many pull requests the fake broker is still
// serving. After a bridge stops, its last long poll lingers here until the
// server sees its connection close; a test that enqueues for the next
// bridge waits for 0 first, or that lingering pull may lease the message.
func (f *FakeBroker) PullsInFlight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pullsInFlight
}

// WaitChange returns a channel closed at the next change: enqueue, ack,
// answered pull or a pull request ending.
func (f *FakeBroker) WaitChange() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Sends returns the decrypted /api/send calls.
func (f *FakeBroker) Sends() []Sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Sent(nil), f.sends...)
}

// HandedOut returns how many pull answers carried message id.
func (f *FakeBroker) HandedOut(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handedOut[id]
}

// PullSizes returns the max_messages of every pull request received, in
// order.
func (f *FakeBroker) PullSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.pullSizes...)
}

// Pulls returns how many pulls were answered.
func (f *FakeBroker) Pulls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pulls
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, fl Failure) {
	for k, vs := range fl.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, fl.Status, protocol.ErrorResponse{Error: fl.Message})
}

func (f *FakeBroker) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/broker-pubkey", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		resp := protocol.BrokerPubkeyResponse{OK: true, BrokerPubkey: f.BoxKey.Public.String(), BrokerSigningPubkey: f.SigningKey.Public().String()}
		f.mu.Unlock()
		writeJSON(w, 200, resp)
	})
	mux.HandleFunc("POST /api/register", f.register)
	mux.HandleFunc("DELETE /api/register", f.unregister)
	mux.HandleFunc("POST /api/inbox/pull", f.pull)
	mux.HandleFunc("POST /api/inbox/ack", f.ack)
	mux.HandleFunc("POST /api/send", f.send)
	mux.HandleFunc("POST /api/call", f.call)
	mux.HandleFunc("POST /api/inbox/respond", f.respond)
	mux.HandleFunc("POST /api/agent/renew", f.renew)
	mux.HandleFunc("POST /api/agent/rekey", f.rekey)
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, protocol.MaxBodySize+1))
	if err != nil {
		return false
	}
	if len(b) > protocol.MaxBodySize {
		fail(w, Failure{Status: 413, Message: protocol.ErrBodyTooLarge})
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		fail(w, Failure{Status: 400, Message: protocol.ErrInvalidJSON})
		return false
	}
	return true
}

func (f *FakeBroker) register(w http.ResponseWriter, r *http.Request) {
	var req protocol.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.registerFailure; fl != nil {
		f.registerFailure = nil
		fail(w, *fl)
		return
	}
	org, err := protocol.ResolveOrgID(req.OrgID, req.WorkspaceID)
	if err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	if org != f.OrgID {
		fail(w, Failure{Status: 404, Message: protocol.ErrOrgNotFound})
		return
	}
	if req.Token() == "" {
		fail(w, Failure{Status: 400, Message: protocol.ErrMissingRegistrationProof})
		return
	}
	if !crypto.EqualString(req.Token(), RegistrationToken) {
		fail(w, Failure{Status: 403, Message: protocol.ErrInvalidRegistrationToken})
		return
	}
	if f.regUsed {
		fail(w, Failure{Status: 403, Message: protocol.ErrRegistrationTokenUsed})
		return
	}
	box, err1 := crypto.ParseBoxPublicKey(req.ServerPubkey)
	sign, err2 := crypto.ParseSigningPublicKey(req.ServerSigningPubkey)
	if err1 != nil || err2 != nil {
		fail(w, Failure{Status: 400, Message: "invalid server_pubkey or server_signing_pubkey"})
		return
	}
	f.regUsed = true
	f.agentBox, f.agentSign, f.registered = box, sign, true
	pub := f.BoxKey.Public.String()
	if f.registerPubkey != "" {
		pub = f.registerPubkey
	}
	writeJSON(w, 200, protocol.RegisterResponse{OK: true, BrokerPubkey: pub, BrokerSigningPubkey: f.SigningKey.Public().String(),
		BrokerAccessToken: f.AccessToken, BrokerAccessTokenExpiresAt: time.Now().Add(90 * 24 * time.Hour).UTC().Format(time.RFC3339),
		BrokerAccessTokenScopes: protocol.DefaultScopes})
}

// authLocked checks bearer, org, timestamp and signature, answering the
// failure itself.
func (f *FakeBroker) authLocked(w http.ResponseWriter, r *http.Request, orgID, wsID string, ts int64, msg []byte, sig string) bool {
	org, err := protocol.ResolveOrgID(orgID, wsID)
	if err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok:
		fail(w, Failure{Status: 401, Message: protocol.ErrMissingToken})
		return false
	case !f.registered || f.tokenExpired || !f.tokenValidLocked(tok):
		fail(w, Failure{Status: 401, Message: protocol.ErrInvalidToken})
		return false
	case org != f.OrgID:
		fail(w, Failure{Status: 403, Message: protocol.ErrTokenOrgMismatch})
		return false
	}
	if d := time.Now().Unix() - ts; d > protocol.TimestampWindow || d < -protocol.TimestampWindow {
		fail(w, Failure{Status: 400, Message: protocol.ErrTimestampWindow})
		return false
	}
	if !protocol.VerifySignature(f.agentSign, msg, sig) {
		fail(w, Failure{Status: 403, Message: protocol.ErrInvalidSignature})
		return false
	}
	return true
}

func (f *FakeBroker) unregister(w http.ResponseWriter, r *http.Request) {
	var req protocol.UnregisterRequest
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, protocol.UnregisterSigningBytes(f.OrgID, req.Timestamp), req.Signature) {
		return
	}
	f.registered = false
	f.queue = nil
	writeJSON(w, 200, map[string]any{"ok": true})
}

func (f *FakeBroker) pull(w http.ResponseWriter, r *http.Request) {
	var req protocol.PullRequest
	if !decode(w, r, &req) {
		return
	}
	maxM, wait, err := req.Limits()
	if err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	f.mu.Lock()
	f.pullSizes = append(f.pullSizes, maxM)
	f.mu.Unlock()
	if req.ProtocolVersion != "" && req.ProtocolVersion != protocol.Version {
		fail(w, Failure{Status: 400, Message: protocol.ErrUnsupportedVersion})
		return
	}
	f.mu.Lock()
	f.pullsInFlight++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.pullsInFlight--
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	signedWait := wait // the signature covers the requested wait, not the one left
	deadline := time.NewTimer(time.Duration(wait) * time.Second)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if len(f.pullFailures) > 0 {
			fl := f.pullFailures[0]
			f.pullFailures = f.pullFailures[1:]
			f.mu.Unlock()
			fail(w, fl)
			return
		}
		if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, protocol.PullSigningBytes(f.OrgID, req.Timestamp, maxM, signedWait), req.Signature) {
			f.mu.Unlock()
			return
		}
		msgs := []protocol.InboxMessage{}
		now := time.Now()
		var nextLapse time.Time // the earliest lease to lapse, to wake up then
		for _, q := range f.queue {
			switch {
			case q.acked:
			case now.Before(q.leasedUntil):
				if nextLapse.IsZero() || q.leasedUntil.Before(nextLapse) {
					nextLapse = q.leasedUntil
				}
			case len(msgs) < maxM:
				msgs = append(msgs, q.msg)
				q.leasedUntil = now.Add(f.lease)
			}
		}
		changed := f.changed
		if len(msgs) > 0 || wait == 0 {
			for _, m := range msgs {
				f.handedOut[m.MessageID]++
			}
			f.pulls++
			f.pullMetas = append(f.pullMetas, req.Meta)
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
			writeJSON(w, 200, protocol.PullResponse{OK: true, Messages: msgs})
			return
		}
		f.mu.Unlock()
		var lapse <-chan time.Time
		var lt *time.Timer
		if !nextLapse.IsZero() {
			lt = time.NewTimer(time.Until(nextLapse))
			lapse = lt.C
		}
		select {
		case <-changed:
		case <-lapse:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
		}
		if lt != nil {
			lt.Stop()
		}
		if r.Context().Err() != nil {
			return
		}
	}
}

func (f *FakeBroker) ack(w http.ResponseWriter, r *http.Request) {
	var req protocol.AckRequest
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	if gate := f.ackGate; gate != nil {
		f.acksHeld++
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
		f.acksHeld--
	}
	defer f.mu.Unlock()
	if f.dropAcks > 0 {
		f.dropAcks--
		panic(http.ErrAbortHandler)
	}
	if len(f.ackFailures) > 0 {
		fl := f.ackFailures[0]
		f.ackFailures = f.ackFailures[1:]
		fail(w, fl)
		return
	}
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, protocol.AckSigningBytes(f.OrgID, req.Timestamp, req.MessageIDs), req.Signature) {
		return
	}
	n := 0
	for _, id := range req.MessageIDs {
		for _, q := range f.queue {
			if q.msg.MessageID == id && !q.acked {
				q.acked = true
				n++
			}
		}
	}
	f.acks = append(f.acks, append([]string(nil), req.MessageIDs...))
	close(f.changed)
	f.changed = make(chan struct{})
	writeJSON(w, 200, protocol.AckResponse{OK: true, Acked: n})
}

func (f *FakeBroker) send(w http.ResponseWriter, r *http.Request) {
	var req protocol.SendRequest
	if !decode(w, r, &req) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := protocol.SendSigningBytes(f.OrgID, req.Action, req.Timestamp, req.EncryptedBody, req.Nonce, req.Routing)
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, msg, req.Signature) {
		return
	}
	if f.nonces[req.Nonce] {
		fail(w, Failure{Status: 409, Message: protocol.ErrReplay})
		return
	}
	f.nonces[req.Nonce] = true
	pt, _, ok := f.openSealed(w, f.agentBox, req.EncryptedBody, req.Nonce)
	if !ok {
		return
	}
	var body protocol.SendBody
	if err := json.Unmarshal(pt, &body); err != nil {
		fail(w, Failure{Status: 400, Message: "invalid encrypted_body: not JSON"})
		return
	}
	switch req.Action {
	case protocol.ActionPostMessage, protocol.ActionUpdate, protocol.ActionReact:
	default:
		fail(w, Failure{Status: 400, Message: protocol.ErrUnknownAction})
		return
	}
	f.sends = append(f.sends, Sent{Action: req.Action, Routing: req.Routing, Body: body, Nonce: req.Nonce})
	if fl := f.sendAnswer; fl != nil {
		fail(w, *fl)
		return
	}
	ts := req.Routing.Timestamp
	if ts == "" {
		ts = strconv.FormatInt(time.Now().Unix(), 10) + "." + fmt.Sprintf("%06d", len(f.sends))
	}
	writeJSON(w, 200, protocol.SendResponse{OK: true, TS: ts, Channel: req.Routing.Channel})
}

// openSealed decodes and opens the crypto_box body of an agent request with
// the agent's box key (returning the plaintext and the request's nonce),
// answering 400 itself when it cannot.
func (f *FakeBroker) openSealed(w http.ResponseWriter, agentBox crypto.BoxPublicKey, bodyB64, nonceB64 string) ([]byte, [crypto.NonceSize]byte, bool) {
	ct, err1 := base64.StdEncoding.DecodeString(bodyB64)
	nb, err2 := base64.StdEncoding.DecodeString(nonceB64)
	if err1 != nil || err2 != nil || len(nb) != crypto.NonceSize {
		fail(w, Failure{Status: 400, Message: "invalid encrypted_body or nonce"})
		return nil, [crypto.NonceSize]byte{}, false
	}
	nonce := [crypto.NonceSize]byte(nb)
	pt, err := f.BoxKey.Open(ct, &nonce, agentBox)
	if err != nil {
		fail(w, Failure{Status: 400, Message: "invalid encrypted_body: does not open"})
		return nil, nonce, false
	}
	return pt, nonce, true
}

package bridgetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/protocol"
)

// Respond is one POST /api/inbox/respond as the broker verified and
// decrypted it (§8.2).
type Respond struct {
	MessageID string
	// Body is the decrypted answer, exactly as the bridge sent it.
	Body  json.RawMessage
	Nonce string
	// AckedBefore reports whether the message had been acked when the
	// respond arrived (the bridge must respond first).
	AckedBefore bool
}

// EnqueueHeld queues env as a held message: its sealed envelope carries
// "response_expected": true and "respond_by" (§8.2). It returns the
// message id.
func (f *FakeBroker) EnqueueHeld(env protocol.Envelope, respondBy time.Time) string {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.registered {
		f.t.Fatal("fake broker: EnqueueHeld before an agent is registered")
	}
	if env.BrokerTimestamp == 0 {
		env.BrokerTimestamp = time.Now().Unix()
	}
	env.ResponseExpected, env.RespondBy = true, respondBy.UnixMilli()
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

// AnswerResponds sets the "delivered" of later responds (true by default).
func (f *FakeBroker) AnswerResponds(delivered bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.respondUndelivered = !delivered
}

// Responds returns the verified responds, in order.
func (f *FakeBroker) Responds() []Respond {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Respond(nil), f.responds...)
}

// PullMetas returns the meta of every pull answered, in order.
func (f *FakeBroker) PullMetas() []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]json.RawMessage(nil), f.pullMetas...)
}

// respond serves POST /api/inbox/respond like the real broker: bearer,
// org, timestamp, signature, nonce replay (shared with sends and calls),
// then the body must open with the agent↔broker key and be a JSON object
// of at most 64 KiB.
func (f *FakeBroker) respond(w http.ResponseWriter, r *http.Request) {
	var req protocol.RespondRequest
	if !decode(w, r, &req) {
		return
	}
	if req.ProtocolVersion != "" && req.ProtocolVersion != protocol.Version {
		fail(w, Failure{Status: 400, Message: protocol.ErrUnsupportedVersion})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := protocol.RespondSigningBytes(f.OrgID, req.Timestamp, req.MessageID, req.EncryptedBody, req.Nonce)
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
	var obj map[string]json.RawMessage
	if len(pt) > 64<<10 || json.Unmarshal(pt, &obj) != nil {
		fail(w, Failure{Status: 400, Message: "invalid encrypted_body: not a JSON object of at most 64 KiB"})
		return
	}
	acked := false
	for _, q := range f.queue {
		if q.msg.MessageID == req.MessageID && q.acked {
			acked = true
		}
	}
	f.responds = append(f.responds, Respond{MessageID: req.MessageID, Body: pt, Nonce: req.Nonce, AckedBefore: acked})
	close(f.changed)
	f.changed = make(chan struct{})
	writeJSON(w, 200, protocol.RespondResponse{OK: true, Delivered: !f.respondUndelivered})
}

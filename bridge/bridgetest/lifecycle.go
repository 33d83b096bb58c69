package bridgetest

import (
	"fmt"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// lifecycleState is the fake broker's view of agent.renew and agent.rekey
// (docs/protocol.md §8.3, §8.4).
type lifecycleState struct {
	current      string // access token after renewals ("" = AccessToken)
	previous     string // the token before the last renewal, while it overlaps
	renewals     int
	renewFails   []Failure
	lifetime     time.Duration // lifetime of renewed tokens (default 90 days)
	rekeys       int
	rekeyFails   []Failure
	dropRekeyAns bool // apply the next rekey but abort the connection
}

// tokenValidLocked reports whether tok authenticates: the current token,
// or the previous one during its overlap.
func (f *FakeBroker) tokenValidLocked(tok string) bool {
	cur := f.AccessToken
	if f.life.current != "" {
		cur = f.life.current
	}
	if crypto.EqualString(tok, cur) {
		return true
	}
	return f.life.previous != "" && crypto.EqualString(tok, f.life.previous)
}

// CurrentToken returns the access token the fake broker issued last.
func (f *FakeBroker) CurrentToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.life.current != "" {
		return f.life.current
	}
	return f.AccessToken
}

// EndTokenOverlap makes the token before the last renewal stop working.
func (f *FakeBroker) EndTokenOverlap() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.life.previous = ""
}

// SetRenewLifetime sets the lifetime of tokens issued by agent.renew.
func (f *FakeBroker) SetRenewLifetime(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.life.lifetime = d
}

// FailRenews queues failures for the next agent.renew calls.
func (f *FakeBroker) FailRenews(fs ...Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.life.renewFails = append(f.life.renewFails, fs...)
}

// Renewals returns how many renewals succeeded.
func (f *FakeBroker) Renewals() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.life.renewals
}

// FailRekeys queues failures for the next agent.rekey calls.
func (f *FakeBroker) FailRekeys(fs ...Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.life.rekeyFails = append(f.life.rekeyFails, fs...)
}

// LoseNextRekeyAnswer makes the next agent.rekey take effect and then
// abort the connection, as if the answer were lost.
func (f *FakeBroker) LoseNextRekeyAnswer() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.life.dropRekeyAns = true
}

// Rekeys returns how many rekeys succeeded.
func (f *FakeBroker) Rekeys() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.life.rekeys
}

// AgentKeys returns the agent's registered public keys.
func (f *FakeBroker) AgentKeys() (crypto.BoxPublicKey, crypto.SigningPublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agentBox, f.agentSign
}

func (f *FakeBroker) useNonceLocked(w http.ResponseWriter, nonce string) bool {
	if f.nonces[nonce] {
		fail(w, Failure{Status: 409, Message: protocol.ErrReplay})
		return false
	}
	f.nonces[nonce] = true
	return true
}

func (f *FakeBroker) renew(w http.ResponseWriter, r *http.Request) {
	var req protocol.RenewRequest
	if !decode(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, protocol.RenewSigningBytes(f.OrgID, req.Timestamp, req.Nonce), req.Signature) {
		return
	}
	if !f.useNonceLocked(w, req.Nonce) {
		return
	}
	if len(f.life.renewFails) > 0 {
		fl := f.life.renewFails[0]
		f.life.renewFails = f.life.renewFails[1:]
		fail(w, fl)
		return
	}
	f.life.renewals++
	old := f.AccessToken
	if f.life.current != "" {
		old = f.life.current
	}
	f.life.previous = old
	f.life.current = fmt.Sprintf("fake-renewed-token-%d-%s", f.life.renewals, f.OrgID)
	life := f.life.lifetime
	if life == 0 {
		life = 90 * 24 * time.Hour
	}
	now := time.Now().UTC()
	writeJSON(w, 200, protocol.RenewResponse{OK: true, BrokerAccessToken: f.life.current,
		BrokerAccessTokenExpiresAt: now.Add(life).Format(time.RFC3339),
		BrokerAccessTokenIssuedAt:  now.Format(time.RFC3339),
		PreviousTokenValidUntil:    now.Add(10 * time.Minute).Format(time.RFC3339)})
}

func (f *FakeBroker) rekey(w http.ResponseWriter, r *http.Request) {
	var req protocol.RekeyRequest
	if !decode(w, r, &req) {
		return
	}
	keys, err := req.Validate()
	if err != nil {
		fail(w, Failure{Status: 400, Message: err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	signed := protocol.RekeySigningBytes(f.OrgID, req.Timestamp, req.ServerPubkey, req.ServerSigningPubkey, req.Nonce)
	if !f.authLocked(w, r, req.OrgID, req.WorkspaceID, req.Timestamp, signed, req.Signature) {
		return
	}
	if !protocol.VerifySignature(keys.Signing, signed, req.NewKeySignature) {
		fail(w, Failure{Status: 403, Message: protocol.ErrInvalidNewKeySignature})
		return
	}
	if !f.useNonceLocked(w, req.Nonce) {
		return
	}
	if len(f.life.rekeyFails) > 0 {
		fl := f.life.rekeyFails[0]
		f.life.rekeyFails = f.life.rekeyFails[1:]
		fail(w, fl)
		return
	}
	f.agentBox, f.agentSign = keys.Box, keys.Signing
	f.life.rekeys++
	if f.life.dropRekeyAns {
		f.life.dropRekeyAns = false
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
	}
	writeJSON(w, 200, protocol.RekeyResponse{OK: true})
}

package broker

import (
	"encoding/base64"
	"encoding/json"
	"net/http"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// callBody seals {"encoding","args"} to the broker and signs an api.call.
// It also returns the request nonce.
func (c *agentClient) callBody(method, encoding string, args any, ts int64) ([]byte, string) {
	c.h.t.Helper()
	pt, err := json.Marshal(map[string]any{"encoding": encoding, "args": args})
	if err != nil {
		c.h.t.Fatal(err)
	}
	ct, nonce, err := c.box.Precompute(c.h.keys.Box.Public).Seal(pt)
	if err != nil {
		c.h.t.Fatal(err)
	}
	n := base64.StdEncoding.EncodeToString(nonce[:])
	return c.signCall(method, base64.StdEncoding.EncodeToString(ct), n, ts), n
}

func (c *agentClient) signCall(method, ct, nonce string, ts int64) []byte {
	sig := c.sig.Sign(protocol.CallSigningBytes(c.org, ts, method, ct, nonce))
	b, _ := json.Marshal(protocol.CallRequest{OrgID: c.org, WorkspaceID: c.org, ProtocolVersion: protocol.Version,
		Method: method, EncryptedBody: ct, Nonce: nonce, Timestamp: ts, Signature: protocol.EncodeSignature(sig)})
	return b
}

func (c *agentClient) callRaw(body []byte) (int, http.Header, []byte) {
	return do(c.h.t, http.MethodPost, c.base+"/api/call", c.token, body, nil)
}

// openCall opens an allowed call's answer and returns Slack's body and the
// response nonce.
func (c *agentClient) openCall(b []byte) ([]byte, string) {
	c.h.t.Helper()
	var cr protocol.CallResponse
	if err := json.Unmarshal(b, &cr); err != nil || !cr.OK {
		c.h.t.Fatalf("call response: %s", b)
	}
	nb, err := base64.StdEncoding.DecodeString(cr.ResponseNonce)
	if err != nil || len(nb) != crypto.NonceSize {
		c.h.t.Fatalf("response_nonce %q", cr.ResponseNonce)
	}
	var nonce [crypto.NonceSize]byte
	copy(nonce[:], nb)
	ct, err := base64.StdEncoding.DecodeString(cr.EncryptedResponse)
	if err != nil {
		c.h.t.Fatal(err)
	}
	pt, err := c.box.Precompute(c.h.keys.Box.Public).Open(ct, &nonce)
	if err != nil {
		c.h.t.Fatalf("response does not open: %v", err)
	}
	return pt, cr.ResponseNonce
}

// call makes an allowed call and returns Slack's decoded answer.
func (c *agentClient) call(method, encoding string, args any) map[string]any {
	c.h.t.Helper()
	body, _ := c.callBody(method, encoding, args, c.now())
	status, _, b := c.callRaw(body)
	if status != http.StatusOK {
		c.h.t.Fatalf("call %s: %d %s", method, status, b)
	}
	pt, _ := c.openCall(b)
	var out map[string]any
	if err := json.Unmarshal(pt, &out); err != nil {
		c.h.t.Fatalf("slack body is not JSON: %q", pt)
	}
	return out
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

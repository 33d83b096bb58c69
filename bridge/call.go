package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// callEnvelopeReserve is what a POST /api/call body needs besides its
// base64 encrypted_body: the JSON field names, org and workspace ids (at
// most protocol.MaxIDLength each), protocol version, method (at most
// protocol.MaxMethodLength), nonce, timestamp and signature, with room to
// spare.
const callEnvelopeReserve = 1024

// maxCallPlaintext is the largest CallBody plaintext whose sealed and
// base64-encoded form still fits the broker's request cap
// (protocol.MaxBodySize) inside the /api/call envelope.
const maxCallPlaintext = (protocol.MaxBodySize-callEnvelopeReserve)/4*3 - crypto.BoxOverhead

// callBodyReserve is the CallBody JSON around the args:
// {"encoding":"form","args":…}.
const callBodyReserve = 64

// MaxCallArgsSize is the largest JSON encoding of a Web API call's
// arguments the bridge relays (about 767 KiB): the request sealed for
// POST /api/call then fits the broker's 1 MiB request cap. The Web API
// facade also reads at most this many bytes of a request body.
const MaxCallArgsSize = maxCallPlaintext - callBodyReserve

// ErrCallTooLarge is returned by Call when the arguments exceed
// MaxCallArgsSize.
var ErrCallTooLarge = errors.New("call arguments too large")

// ErrBrokerFault wraps a broker answer to /api/call that the bridge cannot
// use: a response that does not open, a reused nonce, a body that is not
// JSON. The call may or may not have reached Slack.
var ErrBrokerFault = errors.New("unusable broker answer")

// Call relays one Slack Web API call through the broker (POST /api/call,
// shared/protocol.md §8.1) and returns the exact JSON body Slack answered,
// including a Slack {"ok":false,"error":…}. encoding is protocol.EncodingForm
// (args is a JSON object of strings) or protocol.EncodingJSON (any JSON
// object). The arguments are sealed with crypto_box to the broker under a
// fresh random nonce; the answer is opened with the same shared key under
// the broker's nonce, which must differ from ours.
//
// A broker refusal is a *BrokerError (403 method_not_allowed or
// channel_not_allowed, 429 with RetryAfter, 502 slack_unavailable, 401 …);
// a transport failure wraps ErrUnreachable; an unusable answer wraps
// ErrBrokerFault.
func (b *Bridge) Call(ctx context.Context, method, encoding string, args json.RawMessage) ([]byte, error) {
	if err := protocol.ValidateMethod(method); err != nil {
		return nil, fmt.Errorf("call: %w", err)
	}
	if encoding != protocol.EncodingForm && encoding != protocol.EncodingJSON {
		return nil, fmt.Errorf("call %s: unknown encoding %q", method, encoding)
	}
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	if len(args) > MaxCallArgsSize {
		return nil, fmt.Errorf("call %s: %w (%d bytes; the limit is %d)", method, ErrCallTooLarge, len(args), MaxCallArgsSize)
	}
	// No HTML escaping: it would grow the args past the size checked above.
	pt, err := encodeArgs(protocol.CallBody{Encoding: encoding, Args: args})
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	ct, nonce, err := b.shared.Seal(pt)
	crypto.Wipe(pt)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	ts := b.cfg.Now().Unix()
	encBody := base64.StdEncoding.EncodeToString(ct)
	nonceB64 := base64.StdEncoding.EncodeToString(nonce[:])
	sig := b.cfg.SigningKey.Sign(protocol.CallSigningBytes(b.cfg.OrgID, ts, method, encBody, nonceB64))
	req, err := marshal(protocol.CallRequest{
		OrgID: b.cfg.OrgID, WorkspaceID: b.cfg.OrgID, ProtocolVersion: protocol.Version, Method: method,
		EncryptedBody: encBody, Nonce: nonceB64, Timestamp: ts, Signature: protocol.EncodeSignature(sig),
	})
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	if len(req) > protocol.MaxBodySize {
		return nil, fmt.Errorf("call %s: %w (sealed request is %d bytes; the broker accepts %d)", method, ErrCallTooLarge, len(req), protocol.MaxBodySize)
	}
	var resp protocol.CallResponse
	err = b.client.do(ctx, http.MethodPost, "/api/call", b.accessToken(), req, 30*time.Second, &resp)
	status := "200"
	if err != nil {
		var be *BrokerError
		if errors.As(err, &be) {
			status = fmt.Sprint(be.Status)
		} else {
			status = "unreachable"
		}
	}
	b.metrics.outbound.WithLabelValues(protocol.ActionCall, status).Inc()
	now := b.cfg.Now()
	b.mu.Lock()
	b.health.LastOutboundAt = &now
	b.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	body, err := b.openCallResponse(&resp, nonce)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", method, err)
	}
	return body, nil
}

// openCallResponse opens the broker's sealed answer. The response nonce must
// be 24 bytes and differ from the request's: the shared key is the same in
// both directions, so a reused nonce would mean two messages under one
// (key, nonce) pair.
func (b *Bridge) openCallResponse(resp *protocol.CallResponse, reqNonce [crypto.NonceSize]byte) ([]byte, error) {
	nb, err := base64.StdEncoding.DecodeString(resp.ResponseNonce)
	if err != nil || len(nb) != crypto.NonceSize {
		return nil, fmt.Errorf("%w: response_nonce is not 24 bytes of base64", ErrBrokerFault)
	}
	if bytes.Equal(nb, reqNonce[:]) {
		return nil, fmt.Errorf("%w: response_nonce repeats the request nonce", ErrBrokerFault)
	}
	ct, err := base64.StdEncoding.DecodeString(resp.EncryptedResponse)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_response is not base64", ErrBrokerFault)
	}
	n := [crypto.NonceSize]byte(nb)
	pt, err := b.shared.Open(ct, &n)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted_response does not open", ErrBrokerFault)
	}
	if !json.Valid(pt) || len(bytes.TrimSpace(pt)) == 0 || bytes.TrimSpace(pt)[0] != '{' {
		crypto.Wipe(pt)
		return nil, fmt.Errorf("%w: Slack's answer is not a JSON object", ErrBrokerFault)
	}
	return pt, nil
}

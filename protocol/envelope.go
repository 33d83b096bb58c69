package protocol

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/sealrelay/sealrelay/crypto"
)

// This file owns the inbound envelope (shared/protocol.md §4.5, §5, §8.2):
// the generic envelope sealed inside each inbox message (Envelope and its
// JSON), sealing and signing it (SealEnvelope), the form an inbox stores
// (StoredMessage) and opening it at the bridge (OpenEnvelope).

// Envelope sources.
const (
	SourceSlack  = "slack"
	SourceSystem = "system"
)

// Slack payload types the broker and bridge name. An interactivity
// payload keeps Slack's own type (block_actions, view_submission, …).
const (
	// TypeEventCallback is an Events API event (source slack).
	TypeEventCallback = "event_callback"
	// TypeSlashCommand is a slash command, its form fields as a JSON
	// object (source slack).
	TypeSlashCommand = "slash_command"
	// TypeURLVerification is Slack's Events API handshake; the broker
	// answers it and never queues it.
	TypeURLVerification = "url_verification"
)

// System envelope types (source system). TypeEventsDropped is in notice.go.
const (
	// TypeAppUninstalled relays Slack's app_uninstalled event; the broker
	// has revoked the installation before queueing it.
	TypeAppUninstalled = "app_uninstalled"
	// TypeTokensRevoked relays Slack's tokens_revoked event when it names
	// bot tokens; the broker has revoked the installation.
	TypeTokensRevoked = "tokens_revoked"
	// TypeAppRateLimited relays Slack's app_rate_limited notice.
	TypeAppRateLimited = "app_rate_limited"
)

// Envelope is the generic envelope inside each sealed box. ResponseExpected
// and RespondBy (Unix ms) are the §8.2 extension of a held Slack request;
// they are absent otherwise (and from every Baudbot broker's envelopes).
type Envelope struct {
	Source           string          `json:"source"`
	Type             string          `json:"type"`
	BrokerTimestamp  int64           `json:"broker_timestamp"`
	ResponseExpected bool            `json:"response_expected,omitempty"`
	RespondBy        int64           `json:"respond_by,omitempty"`
	Payload          json.RawMessage `json:"payload"`
}

// envelopeReserve is the JSON an envelope adds around its payload and its
// source and type strings, with room for the §8.2 fields.
const envelopeReserve = 128

// AppendJSON appends the envelope's JSON to dst and returns the result:
// {"source","type","broker_timestamp"[,"response_expected":true,
// "respond_by"],"payload"}, in that order. Payload must be valid JSON; it is
// embedded byte for byte (not re-encoded), so Slack's body reaches the
// agent exactly as Slack sent it. Source and type are encoded as
// encoding/json does. RespondBy is written whenever ResponseExpected is.
func (e *Envelope) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"source":`...)
	dst = appendJSONString(dst, e.Source)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, e.Type)
	dst = append(dst, `,"broker_timestamp":`...)
	dst = strconv.AppendInt(dst, e.BrokerTimestamp, 10)
	if e.ResponseExpected {
		dst = append(dst, `,"response_expected":true,"respond_by":`...)
		dst = strconv.AppendInt(dst, e.RespondBy, 10)
	}
	dst = append(dst, `,"payload":`...)
	dst = append(dst, e.Payload...)
	return append(dst, '}')
}

// Plaintext returns the envelope's JSON (AppendJSON) in a buffer of its
// own, the plaintext SealEnvelope seals; the caller wipes it afterwards.
func (e *Envelope) Plaintext() []byte {
	return e.AppendJSON(make([]byte, 0, len(e.Payload)+len(e.Source)+len(e.Type)+envelopeReserve))
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// marshals it (HTML-safe escaping, invalid UTF-8 as U+FFFD). Plain ASCII,
// which every id and type the broker writes is, takes no allocation.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !jsonPlain[s[i]] {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// jsonPlain marks the bytes encoding/json writes unchanged inside a string:
// printable ASCII except '"', '\\' and the HTML-escaped '<', '>', '&'.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// SealEnvelope seals plaintext (an Envelope's JSON, see Plaintext) to the
// agent's box key and signs the result with the broker's signing key
// (§4.5: "<org_id>|<broker_timestamp>|<encrypted>"). plaintext may be built
// once to seal one envelope to many agents; the caller wipes it afterwards.
func SealEnvelope(plaintext []byte, orgID, messageID string, brokerTimestamp int64, agent crypto.BoxPublicKey, broker *crypto.SigningKey) (InboxMessage, error) {
	sealed, err := crypto.SealAnonymous(plaintext, agent)
	if err != nil {
		return InboxMessage{}, fmt.Errorf("seal envelope: %w", err)
	}
	return signSealed(sealed, orgID, messageID, brokerTimestamp, broker), nil
}

// SealEnvelopeMulti is SealEnvelope for one copy of a message sealed to
// several agents: sealer (one per message) shares its ephemeral key among
// the copies. Each copy is still signed on its own, as section 3 requires.
func SealEnvelopeMulti(sealer *crypto.MultiSealer, plaintext []byte, orgID, messageID string, brokerTimestamp int64, agent crypto.BoxPublicKey, broker *crypto.SigningKey) (InboxMessage, error) {
	sealed, err := sealer.Seal(plaintext, agent)
	if err != nil {
		return InboxMessage{}, fmt.Errorf("seal envelope: %w", err)
	}
	return signSealed(sealed, orgID, messageID, brokerTimestamp, broker), nil
}

// SealEnvelopeStored seals and signs plaintext as SealEnvelope does (or
// SealEnvelopeMulti when sealer is not nil) and returns the copy's stored
// form directly: Stored(&msg) when compact, else StoredJSON(&msg), for the
// InboxMessage msg those would return. It skips building msg's base64
// strings and encoding them again (or, for the binary form, decoding them
// back), which a fan-out does once per agent.
func SealEnvelopeStored(sealer *crypto.MultiSealer, plaintext []byte, orgID string, brokerTimestamp int64, agent crypto.BoxPublicKey, broker *crypto.SigningKey, compact bool) ([]byte, error) {
	var sealed []byte
	var err error
	if sealer != nil {
		sealed, err = sealer.Seal(plaintext, agent)
	} else {
		sealed, err = crypto.SealAnonymous(plaintext, agent)
	}
	if err != nil {
		return nil, fmt.Errorf("seal envelope: %w", err)
	}
	// The signed bytes, "<org_id>|<broker_timestamp>|<encrypted>" as
	// EnvelopeSigningBytes builds them; encrypted is their tail.
	encLen := base64.StdEncoding.EncodedLen(len(sealed))
	signed := make([]byte, 0, len(orgID)+24+encLen)
	signed = append(signed, orgID...)
	signed = append(signed, '|')
	signed = strconv.AppendInt(signed, brokerTimestamp, 10)
	signed = append(signed, '|')
	signed = base64.StdEncoding.AppendEncode(signed, sealed)
	sig := broker.Sign(signed)
	if compact {
		// AppendStored's binary form: what it writes for the canonical
		// base64 SealEnvelope produces.
		out := make([]byte, 0, 1+binary.MaxVarintLen64+len(orgID)+8+len(sig)+len(sealed))
		out = append(out, storedV1)
		out = binary.AppendUvarint(out, uint64(len(orgID)))
		out = append(out, orgID...)
		out = binary.BigEndian.AppendUint64(out, uint64(brokerTimestamp))
		out = append(out, sig...)
		return append(out, sealed...), nil
	}
	enc := signed[len(signed)-encLen:]
	out := make([]byte, 0, len(orgID)+encLen+base64.StdEncoding.EncodedLen(len(sig))+storedReserve)
	out = append(out, `{"o":`...)
	out = appendJSONString(out, orgID)
	out = append(out, `,"e":"`...) // base64 is written unescaped by AppendStoredJSON
	out = append(out, enc...)
	out = append(out, `","t":`...)
	out = strconv.AppendInt(out, brokerTimestamp, 10)
	out = append(out, `,"s":"`...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	return append(out, `"}`...), nil
}

func signSealed(sealed []byte, orgID, messageID string, brokerTimestamp int64, broker *crypto.SigningKey) InboxMessage {
	enc := base64.StdEncoding.EncodeToString(sealed)
	return InboxMessage{
		MessageID:       messageID,
		OrgID:           orgID,
		WorkspaceID:     orgID,
		Encrypted:       enc,
		BrokerTimestamp: brokerTimestamp,
		BrokerSignature: EncodeSignature(broker.Sign(EnvelopeSigningBytes(orgID, brokerTimestamp, enc))),
	}
}

// StoredMessage is the JSON form of what an inbox holds for one sealed
// copy: the signed fields of an InboxMessage under short keys. The wire
// message_id is the queue's message id, added when the copy is pulled
// (ParseStored). Copies are stored in the compact binary form (see
// AppendStored) when their fields allow; ParseStored reads both, so
// messages stored in JSON by earlier versions are still delivered.
type StoredMessage struct {
	OrgID           string `json:"o"`
	Encrypted       string `json:"e"`
	BrokerTimestamp int64  `json:"t"`
	BrokerSignature string `json:"s"`
}

// storedReserve is the JSON a StoredMessage adds around its strings.
const storedReserve = 48

// storedV1 is the first byte of the binary stored form (a JSON form starts
// with '{').
const storedV1 = 0x01

// AppendStored appends the stored form of m to dst. m.MessageID and
// m.WorkspaceID are not stored.
//
// The form is binary — 0x01, the org id's length (uvarint) and bytes, the
// broker timestamp (8 bytes, big-endian), the raw 64-byte signature, then
// the raw sealed box — when m.Encrypted and m.BrokerSignature are canonical
// standard base64 (as SealEnvelope makes them), so that ParseStored gives
// back the very strings that were signed. It stores a 2 KB sealed box in
// about 2.1 KB instead of 2.9 KB of base64 in JSON, and ParseStored needs
// no JSON decoding. Otherwise it is the StoredMessage JSON, byte for byte
// what json.Marshal produces.
func AppendStored(dst []byte, m *InboxMessage) []byte {
	start := len(dst)
	dst = append(dst, storedV1)
	dst = binary.AppendUvarint(dst, uint64(len(m.OrgID)))
	dst = append(dst, m.OrgID...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.BrokerTimestamp))
	sig := len(dst)
	dst, ok := appendCanonical(dst, m.BrokerSignature)
	if ok && len(dst)-sig == crypto.SignatureSize {
		if dst, ok = appendCanonical(slices.Grow(dst, base64.StdEncoding.DecodedLen(len(m.Encrypted))), m.Encrypted); ok {
			return dst
		}
	}
	return AppendStoredJSON(dst[:start], m)
}

// appendCanonical appends the bytes s encodes in standard base64 when s is
// exactly what EncodeToString writes for them (strict padding, no skipped
// newlines), so that encoding them again gives back s.
func appendCanonical(dst []byte, s string) ([]byte, bool) {
	start := len(dst)
	out, err := base64.StdEncoding.Strict().AppendDecode(dst, []byte(s))
	if err != nil || base64.StdEncoding.EncodedLen(len(out)-start) != len(s) {
		return dst[:start], false
	}
	return out, true
}

// AppendStoredJSON appends the StoredMessage JSON of m (what earlier
// versions stored, and what every version reads) to dst.
func AppendStoredJSON(dst []byte, m *InboxMessage) []byte {
	dst = append(dst, `{"o":`...)
	dst = appendJSONString(dst, m.OrgID)
	dst = append(dst, `,"e":`...)
	dst = appendJSONString(dst, m.Encrypted)
	dst = append(dst, `,"t":`...)
	dst = strconv.AppendInt(dst, m.BrokerTimestamp, 10)
	dst = append(dst, `,"s":`...)
	dst = appendJSONString(dst, m.BrokerSignature)
	return append(dst, '}')
}

// Stored returns the stored form of m (AppendStored) in a buffer of its own.
func Stored(m *InboxMessage) []byte {
	return AppendStored(make([]byte, 0, len(m.OrgID)+len(m.Encrypted)+len(m.BrokerSignature)+storedReserve), m)
}

// StoredJSON returns the JSON stored form of m (AppendStoredJSON) in a
// buffer of its own.
func StoredJSON(m *InboxMessage) []byte {
	return AppendStoredJSON(make([]byte, 0, len(m.OrgID)+len(m.Encrypted)+len(m.BrokerSignature)+storedReserve), m)
}

// ErrStoredMalformed is returned by ParseStored for a body that is not a
// stored message.
var ErrStoredMalformed = errors.New("stored inbox message: malformed")

// ParseStored turns a stored body (either form of AppendStored) back into
// the inbox message the agent pulls, with messageID as its id. It checks
// only the form; the bridge verifies the signature.
func ParseStored(messageID string, body []byte) (InboxMessage, error) {
	if len(body) > 0 && body[0] == storedV1 {
		return parseStoredV1(messageID, body)
	}
	if m, ok := parseStoredJSONFast(messageID, body); ok {
		return m, nil
	}
	return parseStoredJSON(messageID, body)
}

// parseStoredJSON reads the JSON form with encoding/json.
func parseStoredJSON(messageID string, body []byte) (InboxMessage, error) {
	var sm StoredMessage
	if err := json.Unmarshal(body, &sm); err != nil {
		return InboxMessage{}, fmt.Errorf("%w: %s", ErrStoredMalformed, jsonErrorKind(err))
	}
	return InboxMessage{
		MessageID: messageID, OrgID: sm.OrgID, WorkspaceID: sm.OrgID, Encrypted: sm.Encrypted,
		BrokerTimestamp: sm.BrokerTimestamp, BrokerSignature: sm.BrokerSignature,
	}, nil
}

// parseStoredV1 reads the binary form.
func parseStoredV1(messageID string, body []byte) (InboxMessage, error) {
	rest := body[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return InboxMessage{}, fmt.Errorf("%w: binary form: bad org id length", ErrStoredMalformed)
	}
	rest = rest[k:]
	org := string(rest[:n])
	rest = rest[n:]
	if len(rest) < 8+crypto.SignatureSize {
		return InboxMessage{}, fmt.Errorf("%w: binary form: truncated", ErrStoredMalformed)
	}
	ts := int64(binary.BigEndian.Uint64(rest))
	sig := rest[8 : 8+crypto.SignatureSize]
	sealed := rest[8+crypto.SignatureSize:]
	return InboxMessage{
		MessageID: messageID, OrgID: org, WorkspaceID: org,
		Encrypted:       base64.StdEncoding.EncodeToString(sealed),
		BrokerTimestamp: ts, BrokerSignature: base64.StdEncoding.EncodeToString(sig),
	}, nil
}

// jsonErrorKind names what is wrong with a JSON document without quoting
// any of it.
func jsonErrorKind(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "not JSON at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + strconv.Quote(te.Field) + " must be a " + te.Type.String()
	}
	return "not a JSON object"
}

// Errors from OpenEnvelope. A message failing with any of them is poison: it
// can never be processed and should be acknowledged and counted.
var (
	ErrEnvelopeSignature = errors.New("envelope: broker signature does not verify")
	ErrEnvelopeOpen      = errors.New("envelope: sealed box does not open")
	ErrEnvelopeMalformed = errors.New("envelope: malformed")
)

// MaxEncryptedSize bounds the base64 "encrypted" field accepted by
// OpenEnvelope.
const MaxEncryptedSize = 4 << 20

// OpenEnvelope verifies m's broker signature (before anything else), opens
// its sealed box with the agent's key pair and parses the generic envelope
// (with the §8.2 fields when present). It returns the envelope and the
// plaintext it was parsed from; the caller wipes the plaintext when done
// (the envelope's payload is a copy).
func OpenEnvelope(m InboxMessage, broker crypto.SigningPublicKey, agent *crypto.BoxKeyPair) (*Envelope, []byte, error) {
	if len(m.Encrypted) > MaxEncryptedSize {
		return nil, nil, fmt.Errorf("%w: encrypted field too large", ErrEnvelopeMalformed)
	}
	if !VerifySignature(broker, EnvelopeSigningBytes(m.OrgID, m.BrokerTimestamp, m.Encrypted), m.BrokerSignature) {
		return nil, nil, ErrEnvelopeSignature
	}
	sealed, err := base64.StdEncoding.DecodeString(m.Encrypted)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: encrypted is not standard base64", ErrEnvelopeMalformed)
	}
	pt, err := agent.OpenAnonymous(sealed)
	if err != nil {
		return nil, nil, ErrEnvelopeOpen
	}
	var env Envelope
	if !decodeEnvelope(pt, &env) {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: envelope is not JSON", ErrEnvelopeMalformed)
	}
	if env.Source == "" || env.Type == "" {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: envelope lacks source or type", ErrEnvelopeMalformed)
	}
	if env.BrokerTimestamp != m.BrokerTimestamp {
		crypto.Wipe(pt)
		return nil, nil, fmt.Errorf("%w: inner broker_timestamp differs from the signed one", ErrEnvelopeMalformed)
	}
	return &env, pt, nil
}

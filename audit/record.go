package audit

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind says what a record is about.
type Kind string

// Record kinds.
const (
	KindInstall      Kind = "install"       // first OAuth install of an org
	KindReinstall    Kind = "reinstall"     // OAuth install over an existing installation
	KindUninstall    Kind = "uninstall"     // Slack's app_uninstalled: tokens deleted
	KindTokenRevoked Kind = "token_revoked" // tokens_revoked, or Slack rejected the bot token
	KindRegister     Kind = "register"      // an agent registered
	KindUnregister   Kind = "unregister"    // an agent unregistered itself
	KindRenew        Kind = "renew"         // an agent renewed its access token
	KindRekey        Kind = "rekey"         // an agent replaced its keys
	KindRevoke       Kind = "revoke"        // an operator revoked an agent
	KindCall         Kind = "call"          // a relayed /api/call (bot token use)
	KindSend         Kind = "send"          // a relayed /api/send (bot token use)
	KindTokenRefresh Kind = "token_refresh" // a rotating bot token was refreshed
)

// Phase splits a bot-token use into the record written before Slack is
// called (PhaseIntent) and the one written after (PhaseResult, whose Ref is
// the intent's sequence number). Other kinds have no phase.
type Phase string

// Phases.
const (
	PhaseNone   Phase = ""
	PhaseIntent Phase = "intent"
	PhaseResult Phase = "result"
)

// MaxField bounds every string field of a record in bytes; longer values
// are cut (at a UTF-8 boundary) when recorded.
const MaxField = 256

// MACSize is the size of a record MAC (HMAC-SHA256).
const MACSize = 32

// MaxRecordSize bounds an encoded record; the decoder refuses larger input.
const MaxRecordSize = 4096

// formatVersion is the first byte of every encoded record.
const formatVersion = 1

// Event is what the broker reports: metadata of one credential use or trust
// change. It never holds arguments, message text or tokens.
type Event struct {
	Kind  Kind  `json:"kind"`
	Phase Phase `json:"phase,omitempty"`
	// Ref is, on a PhaseResult record, the sequence number of its intent
	// record in the same chain.
	Ref     uint64 `json:"ref,omitempty"`
	Org     string `json:"org,omitempty"`
	Agent   string `json:"agent,omitempty"`
	Method  string `json:"method,omitempty"`
	Channel string `json:"channel,omitempty"`
	// Outcome is "ok", "slack_error", "refused", "error" … (free form, short).
	Outcome string `json:"outcome,omitempty"`
	// ErrorCode is Slack's error code (or the broker's) when not ok.
	ErrorCode string `json:"error_code,omitempty"`
	BytesIn   int64  `json:"bytes_in,omitempty"`
	BytesOut  int64  `json:"bytes_out,omitempty"`
}

// Record is one entry of a chain.
type Record struct {
	// Chain is the id of the chain (one per broker process start).
	Chain string `json:"chain"`
	// Seq numbers the chain's records from 1 without gaps.
	Seq uint64 `json:"seq"`
	// Time is when the record was written (UTC, nanosecond precision).
	Time time.Time `json:"time"`
	Event
	// MAC is HMAC-SHA256 over the previous record's MAC and this record's
	// canonical encoding (see Key.mac).
	MAC []byte `json:"-"`
}

// MACHex returns the MAC in lower-case hex.
func (r *Record) MACHex() string { return hex.EncodeToString(r.MAC) }

// ValidChainID reports whether id can name a chain: 1–64 characters of
// [a-z0-9-], starting with a letter or digit (safe in store keys and Redis
// hash tags).
func ValidChainID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validKind reports whether k is [a-z][a-z0-9_]{0,31}.
func validKind(k Kind) bool {
	if len(k) == 0 || len(k) > 32 || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// clip cuts s to MaxField bytes at a rune boundary and replaces invalid
// UTF-8, so that any recorded value encodes.
func clip(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= MaxField {
		return s
	}
	cut := MaxField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// normalize makes ev encodable: fields clipped, byte counts not negative.
func (ev Event) normalize() Event {
	ev.Org, ev.Agent, ev.Method, ev.Channel = clip(ev.Org), clip(ev.Agent), clip(ev.Method), clip(ev.Channel)
	ev.Outcome, ev.ErrorCode = clip(ev.Outcome), clip(ev.ErrorCode)
	ev.BytesIn, ev.BytesOut = max(ev.BytesIn, 0), max(ev.BytesOut, 0)
	return ev
}

// body returns the canonical encoding of r without its MAC:
//
//	version(1) ‖ str(chain) ‖ uvarint(seq) ‖ int64be(unix nanos) ‖ str(kind) ‖
//	str(phase) ‖ uvarint(ref) ‖ str(org) ‖ str(agent) ‖ str(method) ‖
//	str(channel) ‖ str(outcome) ‖ str(error_code) ‖ uvarint(bytes_in) ‖
//	uvarint(bytes_out)
//
// where str(s) = uvarint(len(s)) ‖ s.
func (r *Record) body() []byte {
	b := make([]byte, 0, 128)
	b = append(b, formatVersion)
	b = appendString(b, r.Chain)
	b = binary.AppendUvarint(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = appendString(b, string(r.Kind))
	b = appendString(b, string(r.Phase))
	b = binary.AppendUvarint(b, r.Ref)
	for _, s := range []string{r.Org, r.Agent, r.Method, r.Channel, r.Outcome, r.ErrorCode} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(r.BytesIn))
	b = binary.AppendUvarint(b, uint64(r.BytesOut))
	return b
}

// Encode returns the stored form of r: its canonical encoding followed by
// its MAC.
func (r *Record) Encode() []byte {
	return append(r.body(), r.MAC...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ErrMalformed wraps every decoding error.
var ErrMalformed = errors.New("audit: malformed record")

// Decode parses a stored record. It accepts only the canonical encoding
// (Encode of the result gives back data exactly) and bounds every field.
func Decode(data []byte) (*Record, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrMalformed, len(data), MaxRecordSize)
	}
	if len(data) < 1+MACSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(data))
	}
	d := decoder{b: data[:len(data)-MACSize]}
	if v := d.byte(); v != formatVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, formatVersion)
	}
	r := &Record{}
	r.Chain = d.str("chain")
	r.Seq = d.uvarint("seq")
	r.Time = time.Unix(0, int64(d.uint64("time"))).UTC()
	r.Kind = Kind(d.str("kind"))
	r.Phase = Phase(d.str("phase"))
	r.Ref = d.uvarint("ref")
	for _, f := range []struct {
		p    *string
		name string
	}{{&r.Org, "org"}, {&r.Agent, "agent"}, {&r.Method, "method"}, {&r.Channel, "channel"}, {&r.Outcome, "outcome"}, {&r.ErrorCode, "error_code"}} {
		*f.p = d.str(f.name)
	}
	in, out := d.uvarint("bytes_in"), d.uvarint("bytes_out")
	if d.err == nil && (in > 1<<62 || out > 1<<62) {
		d.err = errors.New("byte count out of range")
	}
	r.BytesIn, r.BytesOut = int64(in), int64(out)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, d.err)
	}
	switch {
	case !ValidChainID(r.Chain):
		return nil, fmt.Errorf("%w: chain id is not [a-z0-9-]{1,64}", ErrMalformed)
	case r.Seq == 0:
		return nil, fmt.Errorf("%w: seq 0", ErrMalformed)
	case !validKind(r.Kind):
		return nil, fmt.Errorf("%w: kind is not [a-z][a-z0-9_]{0,31}", ErrMalformed)
	case r.Phase != PhaseNone && r.Phase != PhaseIntent && r.Phase != PhaseResult:
		return nil, fmt.Errorf("%w: unknown phase", ErrMalformed)
	}
	r.MAC = append([]byte(nil), data[len(data)-MACSize:]...)
	return r, nil
}

// decoder reads the canonical encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.fail("version")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) fail(field string) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: truncated or invalid", field)
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	// Canonical only: the minimal encoding of v.
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.fail(field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64(field string) uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail(field)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) str(field string) string {
	n := d.uvarint(field)
	if d.err != nil {
		return ""
	}
	if n > MaxField || n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%s: length %d out of range", field, n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	if !utf8.ValidString(s) {
		d.err = fmt.Errorf("%s: not UTF-8", field)
		return ""
	}
	return s
}

// MarshalJSON adds the MAC, in hex, to the record's JSON form (the form
// `broker audit tail --json` prints).
func (r *Record) MarshalJSON() ([]byte, error) {
	type plain Record
	return json.Marshal(struct {
		*plain
		MAC string `json:"mac"`
	}{(*plain)(r), r.MACHex()})
}

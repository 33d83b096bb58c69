package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
)

// keyLabel domain-separates the chain key from every other key derived
// from the broker's signing seed.
const keyLabel = "sealrelay/broker/audit-chain-key/v1"

// macLabel and checkpointLabel domain-separate what is MACed and signed.
const (
	macLabel        = "sealrelay/audit/record/v1\x00"
	checkpointLabel = "sealrelay/audit/checkpoint/v1\x00"
)

// Keys are what writing and verifying a chain need: the chain MAC key,
// derived from the broker's Ed25519 seed, and that Ed25519 key itself,
// which signs checkpoints.
//
//	chain key = HMAC-SHA256(key = seed, msg = "sealrelay/broker/audit-chain-key/v1")
type Keys struct {
	mac     []byte
	signing *crypto.SigningKey
}

// DeriveKeys derives the audit keys from the broker's signing key, so every
// replica (and the `broker audit verify` command) sharing the broker keys
// computes the same MACs.
func DeriveKeys(sk *crypto.SigningKey) (*Keys, error) {
	if sk == nil {
		return nil, errors.New("audit: signing key missing")
	}
	return &Keys{mac: sk.DeriveKey(keyLabel), signing: sk}, nil
}

// recordMAC returns HMAC(chain key, label ‖ prev ‖ body).
func (k *Keys) recordMAC(prev, body []byte) []byte {
	msg := make([]byte, 0, len(macLabel)+len(prev)+len(body))
	msg = append(append(append(msg, macLabel...), prev...), body...)
	return crypto.HMACSHA256(k.mac, msg)
}

// zeroMAC is the "previous MAC" of a chain's first record.
var zeroMAC = make([]byte, MACSize)

// Checkpoint is a signed statement of a chain's head: "chain Chain had
// Seq records, the last with MAC MAC, at Time".
type Checkpoint struct {
	Chain string    `json:"chain"`
	Seq   uint64    `json:"seq"`
	MAC   []byte    `json:"-"`
	Time  time.Time `json:"time"`
	// Sig is the broker's Ed25519 signature over signedBytes.
	Sig []byte `json:"-"`
}

// signedBytes is label ‖ str(chain) ‖ uint64be(seq) ‖ mac(32) ‖ int64be(unix nanos).
func (c *Checkpoint) signedBytes() []byte {
	b := append([]byte(checkpointLabel), byte(len(c.Chain)))
	b = append(b, c.Chain...)
	b = binary.BigEndian.AppendUint64(b, c.Seq)
	b = append(b, c.MAC...)
	return binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixNano()))
}

// sign fills c.Sig.
func (k *Keys) sign(c *Checkpoint) { c.Sig = k.signing.Sign(c.signedBytes()) }

// checkSig reports whether c.Sig is the broker's signature of c.
func (k *Keys) checkSig(c *Checkpoint) bool {
	return len(c.MAC) == MACSize && k.signing.Public().Verify(c.signedBytes(), c.Sig)
}

// checkpointSize is the encoded size: signed bytes minus the label, plus a
// 64-byte signature.
const sigSize = 64

// Encode returns the stored form of c: str(chain) ‖ seq ‖ mac ‖ time ‖ sig.
func (c *Checkpoint) Encode() []byte {
	b := c.signedBytes()[len(checkpointLabel):]
	return append(b, c.Sig...)
}

// DecodeCheckpoint parses a stored checkpoint (it does not check the
// signature; Verify does).
func DecodeCheckpoint(data []byte) (*Checkpoint, error) {
	if len(data) < 1 {
		return nil, fmt.Errorf("%w: empty checkpoint", ErrMalformed)
	}
	n := int(data[0])
	if len(data) != 1+n+8+MACSize+8+sigSize {
		return nil, fmt.Errorf("%w: checkpoint of %d bytes", ErrMalformed, len(data))
	}
	c := &Checkpoint{Chain: string(data[1 : 1+n])}
	p := data[1+n:]
	c.Seq = binary.BigEndian.Uint64(p)
	c.MAC = append([]byte(nil), p[8:8+MACSize]...)
	c.Time = time.Unix(0, int64(binary.BigEndian.Uint64(p[8+MACSize:]))).UTC()
	c.Sig = append([]byte(nil), p[16+MACSize:]...)
	if !ValidChainID(c.Chain) {
		return nil, fmt.Errorf("%w: checkpoint chain id is not [a-z0-9-]{1,64}", ErrMalformed)
	}
	return c, nil
}

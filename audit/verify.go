package audit

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/sealrelay/sealrelay/crypto"
)

// Reason says what is wrong at a bad sequence number.
type Reason string

// Reasons Verify reports.
const (
	// ReasonEdited: the record at Seq does not decode, names another chain,
	// or its MAC (over the previous MAC and its content) is wrong, or it
	// disagrees with a signed checkpoint.
	ReasonEdited Reason = "edited"
	// ReasonRemoved: Seq is missing and no later record carries it (a gap).
	ReasonRemoved Reason = "removed"
	// ReasonReordered: Seq is out of place (it appears later, or again).
	ReasonReordered Reason = "reordered"
	// ReasonTruncated: a signed checkpoint covers Seq but the chain ends
	// before it.
	ReasonTruncated Reason = "truncated"
	// ReasonBadCheckpoint: a stored checkpoint does not decode or its
	// signature is not the broker's.
	ReasonBadCheckpoint Reason = "bad_checkpoint"
)

// Problem is the first bad sequence number of a chain.
type Problem struct {
	Chain  string `json:"chain"`
	Seq    uint64 `json:"seq"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

func (p *Problem) String() string {
	return fmt.Sprintf("chain %s: seq %d %s: %s", p.Chain, p.Seq, p.Reason, p.Detail)
}

// ChainReport is what Verify found in one chain.
type ChainReport struct {
	Chain string `json:"chain"`
	// Records is how many records are stored; Verified how many verified
	// from the start (all of them when Problem is nil).
	Records  int64  `json:"records"`
	Verified uint64 `json:"verified"`
	// LastCheckpoint is the highest valid checkpoint (nil: none).
	LastCheckpoint *Checkpoint `json:"last_checkpoint,omitempty"`
	// Problem is the chain's first bad sequence number (nil: intact).
	Problem *Problem `json:"problem,omitempty"`
}

// Report is the result of Verify: every chain, sorted by id.
type Report struct {
	Chains []ChainReport `json:"chains"`
}

// OK reports whether every chain verified.
func (r *Report) OK() bool { return len(r.Problems()) == 0 }

// Problems returns each bad chain's first problem.
func (r *Report) Problems() []*Problem {
	var ps []*Problem
	for _, c := range r.Chains {
		if c.Problem != nil {
			ps = append(ps, c.Problem)
		}
	}
	return ps
}

// Records returns the total number of stored records.
func (r *Report) Records() int64 {
	var n int64
	for _, c := range r.Chains {
		n += c.Records
	}
	return n
}

// verifyPage is how many records Verify reads at once.
const verifyPage = 1000

// Verify walks every chain of st and reports, per chain, the first bad
// sequence number and why. An error means the store could not be read (not
// that the log is bad).
func Verify(ctx context.Context, st Store, keys *Keys) (*Report, error) {
	ids, err := st.Chains(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit verify: list chains: %w", err)
	}
	sort.Strings(ids)
	rep := &Report{}
	for _, id := range ids {
		cr, err := verifyChain(ctx, st, keys, id)
		if err != nil {
			return nil, err
		}
		rep.Chains = append(rep.Chains, *cr)
	}
	return rep, nil
}

func verifyChain(ctx context.Context, st Store, keys *Keys, id string) (*ChainReport, error) {
	cr := &ChainReport{Chain: id}
	// Checkpoints before the length: a writer stores a record before the
	// checkpoint that covers it, so on a chain that is still being written
	// (a running broker's) every checkpoint read here covers a record
	// within n, and a write racing Verify is never taken for truncation.
	rawCPs, err := st.Checkpoints(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("audit verify: chain %s: checkpoints: %w", id, err)
	}
	n, err := st.Len(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("audit verify: chain %s: length: %w", id, err)
	}
	cr.Records = n
	// Checkpoints first: their signatures, and which seqs they pin.
	var cps []*Checkpoint
	var cpProblem *Problem
	for i, raw := range rawCPs {
		c, err := DecodeCheckpoint(raw)
		switch {
		case err != nil:
			cpProblem = first(cpProblem, &Problem{Chain: id, Reason: ReasonBadCheckpoint, Detail: fmt.Sprintf("checkpoint %d does not decode", i+1)})
			continue
		case c.Chain != id || !keys.checkSig(c):
			cpProblem = first(cpProblem, &Problem{Chain: id, Seq: c.Seq, Reason: ReasonBadCheckpoint,
				Detail: fmt.Sprintf("checkpoint %d (seq %d) is not signed by this broker's key for this chain", i+1, c.Seq)})
			continue
		}
		cps = append(cps, c)
	}
	pinned := map[uint64][]byte{}
	var maxCP *Checkpoint
	for _, c := range cps {
		pinned[c.Seq] = c.MAC // a later checkpoint of the same seq must agree; see below
		if maxCP == nil || c.Seq > maxCP.Seq {
			maxCP = c
		}
	}
	for _, c := range cps {
		if !slices.Equal(pinned[c.Seq], c.MAC) {
			cpProblem = first(cpProblem, &Problem{Chain: id, Seq: c.Seq, Reason: ReasonEdited,
				Detail: "two signed checkpoints disagree on this record's MAC"})
		}
	}
	cr.LastCheckpoint = maxCP

	// Walk the records.
	want, prev := uint64(1), zeroMAC
	var walk *Problem
	for pos := int64(0); pos < n && walk == nil; pos += verifyPage {
		page, err := st.Range(ctx, id, pos, verifyPage)
		if err != nil {
			return nil, fmt.Errorf("audit verify: chain %s: read at %d: %w", id, pos, err)
		}
		for i, raw := range page {
			var mac []byte
			mac, walk = checkOne(keys, id, raw, want, prev, pinned)
			if walk != nil {
				if walk.Reason == ReasonRemoved {
					// A gap, unless want appears later: then it was moved.
					later, err := appearsAfter(ctx, st, id, pos+int64(i)+1, n, want)
					if err != nil {
						return nil, err
					}
					if later {
						walk.Reason = ReasonReordered
						walk.Detail = fmt.Sprintf("seq %d is stored after a later record", want)
					}
				}
				break
			}
			prev = mac
			want++
		}
		if len(page) == 0 {
			break
		}
	}
	cr.Verified = want - 1
	if walk == nil && maxCP != nil && maxCP.Seq > cr.Verified {
		walk = &Problem{Chain: id, Seq: cr.Verified + 1, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("a signed checkpoint covers seq %d but the chain ends at seq %d", maxCP.Seq, cr.Verified)}
	}
	cr.Problem = first(walk, cpProblem)
	return cr, nil
}

// checkOne checks the record raw where seq want (after MAC prev) belongs
// and returns its MAC when it is good.
func checkOne(keys *Keys, id string, raw []byte, want uint64, prev []byte, pinned map[uint64][]byte) ([]byte, *Problem) {
	r, err := Decode(raw)
	switch {
	case err != nil:
		return nil, &Problem{Chain: id, Seq: want, Reason: ReasonEdited, Detail: "record does not decode: " + err.Error()}
	case r.Chain != id:
		return nil, &Problem{Chain: id, Seq: want, Reason: ReasonEdited, Detail: "record names chain " + r.Chain}
	case r.Seq > want:
		return nil, &Problem{Chain: id, Seq: want, Reason: ReasonRemoved, Detail: fmt.Sprintf("seq %d follows seq %d", r.Seq, want-1)}
	case r.Seq < want:
		return nil, &Problem{Chain: id, Seq: r.Seq, Reason: ReasonReordered, Detail: fmt.Sprintf("seq %d appears again after seq %d", r.Seq, want-1)}
	case !crypto.Equal(keys.recordMAC(prev, raw[:len(raw)-MACSize]), r.MAC):
		// raw minus its MAC is the canonical encoding (Decode accepts no other).
		return nil, &Problem{Chain: id, Seq: want, Reason: ReasonEdited, Detail: "MAC does not match the record and its predecessor"}
	}
	if mac, ok := pinned[want]; ok && !slices.Equal(mac, r.MAC) {
		return nil, &Problem{Chain: id, Seq: want, Reason: ReasonEdited, Detail: "record differs from the signed checkpoint of this seq (chain rewritten with the key?)"}
	}
	return r.MAC, nil
}

// appearsAfter reports whether a decodable record with seq is stored at or
// after position from.
func appearsAfter(ctx context.Context, st Store, id string, from, n int64, seq uint64) (bool, error) {
	for pos := from; pos < n; pos += verifyPage {
		page, err := st.Range(ctx, id, pos, verifyPage)
		if err != nil {
			return false, fmt.Errorf("audit verify: chain %s: read at %d: %w", id, pos, err)
		}
		for _, raw := range page {
			if r, err := Decode(raw); err == nil && r.Chain == id && r.Seq == seq {
				return true, nil
			}
		}
		if len(page) == 0 {
			break
		}
	}
	return false, nil
}

// first returns whichever of a and b has the lower seq (a when equal, the
// other when one is nil).
func first(a, b *Problem) *Problem {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case b.Seq < a.Seq:
		return b
	}
	return a
}

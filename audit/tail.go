package audit

import (
	"context"
	"fmt"
	"sort"
)

// Tail returns the n newest records across every chain, oldest first
// (by time, then chain, then seq). Records that do not decode are skipped;
// Verify reports them.
func Tail(ctx context.Context, st Store, n int) ([]*Record, error) {
	if n <= 0 {
		return nil, nil
	}
	ids, err := st.Chains(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit tail: list chains: %w", err)
	}
	var all []*Record
	for _, id := range ids {
		l, err := st.Len(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("audit tail: chain %s: length: %w", id, err)
		}
		recs, err := readFrom(ctx, st, id, max(0, l-int64(n)), n)
		if err != nil {
			return nil, err
		}
		all = append(all, recs...)
	}
	sortRecords(all)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all, nil
}

// Since returns the records of chain stored from position from on, and the
// position after the last one: `broker audit tail --follow` calls it with
// the positions it has seen.
func Since(ctx context.Context, st Store, chain string, from int64) ([]*Record, int64, error) {
	l, err := st.Len(ctx, chain)
	if err != nil {
		return nil, from, fmt.Errorf("audit: chain %s: length: %w", chain, err)
	}
	if l <= from {
		return nil, from, nil
	}
	recs, err := readFrom(ctx, st, chain, from, int(l-from))
	return recs, l, err
}

func readFrom(ctx context.Context, st Store, id string, start int64, n int) ([]*Record, error) {
	raws, err := st.Range(ctx, id, start, n)
	if err != nil {
		return nil, fmt.Errorf("audit: chain %s: read at %d: %w", id, start, err)
	}
	out := make([]*Record, 0, len(raws))
	for _, raw := range raws {
		if r, err := Decode(raw); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// sortRecords orders records by time, then chain, then seq.
func sortRecords(rs []*Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Chain != b.Chain {
			return a.Chain < b.Chain
		}
		return a.Seq < b.Seq
	})
}

// SortRecords orders records by time, then chain, then seq (the order Tail
// returns).
func SortRecords(rs []*Record) { sortRecords(rs) }

package broker

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sealrelay/sealrelay/audit"
)

// Limits of the raw audit API (each also the default of its n).
const (
	// MaxAuditRange bounds GET /admin/api/audit/chains/{chain}/records?n=.
	MaxAuditRange = 1000
	// MaxAuditCheckpoints bounds GET .../{chain}/checkpoints?n=.
	MaxAuditCheckpoints = 10000
)

// ErrAuditOff is the error text of the raw audit routes when the broker has
// no audit store (the CLI recognises it).
const ErrAuditOff = "audit log is off on this broker: it serves no audit store"

// The raw audit API hands out the audit store's bytes unchanged (base64 in
// JSON) and judges nothing: `broker audit verify --admin-url` walks them
// with the operator's own keys. Whoever answers here can therefore hide
// what a store attacker could hide (a whole chain, a tail past the last
// checkpoint), never make a tampered chain verify.

func (h *adminHandler) auditOn() error {
	if h.auditStore == nil {
		return adminErr(http.StatusNotFound, "%s", ErrAuditOff)
	}
	return nil
}

// auditPage reads ?start= (a position, default 0) and ?n= (0 to limit,
// default limit).
func auditPage(r *http.Request, limit int) (start int64, n int, err error) {
	q := r.URL.Query()
	if s := q.Get("start"); s != "" {
		if start, err = strconv.ParseInt(s, 10, 64); err != nil || start < 0 {
			return 0, 0, adminErr(http.StatusBadRequest, "invalid start: want a position of 0 or more")
		}
	}
	n = limit
	if s := q.Get("n"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > limit {
			return 0, 0, adminErr(http.StatusBadRequest, "invalid n: want 0 to %d", limit)
		}
	}
	return start, n, nil
}

func pathChain(r *http.Request) (string, error) {
	id := r.PathValue("chain")
	if !audit.ValidChainID(id) {
		return "", adminErr(http.StatusBadRequest, "invalid chain id %q: want 1 to 64 characters of a-z, 0-9 and -, not starting with -", truncateForError(id))
	}
	return id, nil
}

// auditChains answers {"chains": [ids, sorted]}.
func (h *adminHandler) auditChains(w http.ResponseWriter, r *http.Request) error {
	if err := h.auditOn(); err != nil {
		return err
	}
	ids, err := h.auditStore.Chains(r.Context())
	if err != nil {
		return err
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	if ids == nil {
		ids = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "chains": ids})
	return nil
}

// auditRecords answers {"chain", "len", "start", "records": [base64...]}:
// up to n (0 to MaxAuditRange, default MaxAuditRange) records from
// position start (0-based), exactly as stored. An unknown chain has len 0,
// as in audit.Store.
func (h *adminHandler) auditRecords(w http.ResponseWriter, r *http.Request) error {
	if err := h.auditOn(); err != nil {
		return err
	}
	id, err := pathChain(r)
	if err != nil {
		return err
	}
	start, n, err := auditPage(r, MaxAuditRange)
	if err != nil {
		return err
	}
	l, err := h.auditStore.Len(r.Context(), id)
	if err != nil {
		return err
	}
	recs := [][]byte{}
	if n > 0 && start < l {
		if recs, err = h.auditStore.Range(r.Context(), id, start, n); err != nil {
			return err
		}
		if recs == nil {
			recs = [][]byte{}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "chain": id, "len": l, "start": start, "records": recs})
	return nil
}

// auditCheckpoints answers {"chain", "len", "start", "checkpoints":
// [base64...]}: up to n (0 to MaxAuditCheckpoints, default
// MaxAuditCheckpoints) checkpoints from position start, exactly as stored,
// in append order. (audit.Store reads all of a chain's checkpoints at once;
// the page only bounds the answer.)
func (h *adminHandler) auditCheckpoints(w http.ResponseWriter, r *http.Request) error {
	if err := h.auditOn(); err != nil {
		return err
	}
	id, err := pathChain(r)
	if err != nil {
		return err
	}
	start, n, err := auditPage(r, MaxAuditCheckpoints)
	if err != nil {
		return err
	}
	all, err := h.auditStore.Checkpoints(r.Context(), id)
	if err != nil {
		return err
	}
	l := int64(len(all))
	cps := [][]byte{}
	if start < l {
		cps = all[start:min(l, start+int64(n))]
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "chain": id, "len": l, "start": start, "checkpoints": cps})
	return nil
}

// auditRows returns the n newest records of st as the page's display rows
// (never arguments: the records hold none).
func auditRows(ctx context.Context, st audit.Store, n int) ([]AuditRow, error) {
	recs, err := audit.Tail(ctx, st, n)
	if err != nil {
		return nil, err
	}
	rows := make([]AuditRow, 0, len(recs))
	for _, r := range recs {
		var sum []string
		for _, f := range []struct{ k, v string }{
			{"phase", string(r.Phase)}, {"method", r.Method}, {"channel", r.Channel},
			{"outcome", r.Outcome}, {"error", r.ErrorCode},
		} {
			if f.v != "" {
				sum = append(sum, f.k+"="+f.v)
			}
		}
		rows = append(rows, AuditRow{Seq: r.Seq, Time: r.Time, Kind: string(r.Kind),
			OrgID: r.Org, AgentID: r.Agent, Summary: strings.Join(sum, " ")})
	}
	return rows, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/broker"
)

// errAuditOff is returned (wrapped, naming the listener) when the broker's
// admin listener serves no audit store.
var errAuditOff = errors.New("audit log is off on the broker")

// errAuditReadOnly refuses writes through the admin listener.
var errAuditReadOnly = errors.New("audit store through the admin listener is read-only")

// httpAuditStore is the audit.Store of a running broker, read through its
// admin listener (GET /admin/api/audit/chains...). It only fetches the
// stored bytes: audit.Verify checks them here, with the operator's keys,
// so nothing the listener answers can make a tampered chain verify.
type httpAuditStore struct{ h *httpAdmin }

var _ audit.Store = httpAuditStore{}

// Append implements audit.Store: refused (read-only).
func (httpAuditStore) Append(context.Context, string, []byte) error { return errAuditReadOnly }

// Checkpoint implements audit.Store: refused (read-only).
func (httpAuditStore) Checkpoint(context.Context, string, []byte) error { return errAuditReadOnly }

// Chains implements audit.Store.
func (s httpAuditStore) Chains(ctx context.Context) ([]string, error) {
	var out struct {
		Chains []string `json:"chains"`
	}
	if err := s.h.call(ctx, "GET", "audit/chains", nil, "", &out); err != nil {
		return nil, err
	}
	for _, id := range out.Chains {
		if !audit.ValidChainID(id) {
			return nil, fmt.Errorf("admin listener at %s listed %q, which is not a chain id", s.h.display, truncate(id, 80))
		}
	}
	return out.Chains, nil
}

// auditPage is one answer of the records or checkpoints route.
type auditPage struct {
	Chain       string   `json:"chain"`
	Len         int64    `json:"len"`
	Start       int64    `json:"start"`
	Records     [][]byte `json:"records"`
	Checkpoints [][]byte `json:"checkpoints"`
}

func (s httpAuditStore) page(ctx context.Context, chain, what string, start int64, n int) (*auditPage, error) {
	if !audit.ValidChainID(chain) {
		return nil, fmt.Errorf("audit: %q is not a chain id", truncate(chain, 80))
	}
	var p auditPage
	path := "audit/chains/" + url.PathEscape(chain) + "/" + what + "?start=" + strconv.FormatInt(start, 10) + "&n=" + strconv.Itoa(n)
	if err := s.h.call(ctx, "GET", path, nil, "", &p); err != nil {
		return nil, err
	}
	if p.Chain != chain || p.Start != start || p.Len < 0 {
		return nil, fmt.Errorf("admin listener at %s answered chain %q from %d for chain %s from %d", s.h.display, truncate(p.Chain, 80), p.Start, chain, start)
	}
	return &p, nil
}

// Len implements audit.Store.
func (s httpAuditStore) Len(ctx context.Context, chain string) (int64, error) {
	p, err := s.page(ctx, chain, "records", 0, 0)
	if err != nil {
		return 0, err
	}
	return p.Len, nil
}

// Range implements audit.Store, in pages of at most broker.MaxAuditRange.
func (s httpAuditStore) Range(ctx context.Context, chain string, start int64, n int) ([][]byte, error) {
	if start < 0 || n < 0 {
		return nil, errors.New("audit: negative range")
	}
	var out [][]byte
	for len(out) < n {
		p, err := s.page(ctx, chain, "records", start+int64(len(out)), min(n-len(out), broker.MaxAuditRange))
		if err != nil {
			return nil, err
		}
		if len(p.Records) > n-len(out) {
			return nil, fmt.Errorf("admin listener at %s answered %d records for %d", s.h.display, len(p.Records), n-len(out))
		}
		out = append(out, p.Records...)
		if len(p.Records) == 0 || start+int64(len(out)) >= p.Len {
			break
		}
	}
	return out, nil
}

// Checkpoints implements audit.Store, in pages of at most
// broker.MaxAuditCheckpoints.
func (s httpAuditStore) Checkpoints(ctx context.Context, chain string) ([][]byte, error) {
	var out [][]byte
	for {
		p, err := s.page(ctx, chain, "checkpoints", int64(len(out)), broker.MaxAuditCheckpoints)
		if err != nil {
			return nil, err
		}
		if len(p.Checkpoints) > broker.MaxAuditCheckpoints {
			return nil, fmt.Errorf("admin listener at %s answered %d checkpoints for %d", s.h.display, len(p.Checkpoints), broker.MaxAuditCheckpoints)
		}
		out = append(out, p.Checkpoints...)
		if len(p.Checkpoints) == 0 || int64(len(out)) >= p.Len {
			return out, nil
		}
	}
}

// truncate cuts s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

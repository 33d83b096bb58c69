package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sealrelay/sealrelay/state"
)

var _ state.Registration = (*State)(nil)

// PutRegistrationToken implements state.OneTime: a token of mode add.
func (s *State) PutRegistrationToken(ctx context.Context, h state.TokenHash, orgID string, expiresAt time.Time) error {
	return s.PutRegistrationTokenMode(ctx, h, orgID, state.RegistrationAdd, expiresAt)
}

// PutRegistrationTokenMode implements state.Registration.
func (s *State) PutRegistrationTokenMode(ctx context.Context, h state.TokenHash, orgID string, mode state.RegistrationMode, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := state.ParseRegistrationMode(string(mode)); err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	p, err := json.Marshal(boltRegToken{Org: orgID, Exp: expiresAt.UnixMilli(), Mode: string(mode)})
	if err != nil {
		return fmt.Errorf("encode registration token: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktRegTok).Put(h[:], boltExp(expiresAt, p))
	})
	if err != nil {
		return fmt.Errorf("put registration token: %w", err)
	}
	return nil
}

// boltOrgAgents returns the agents of org inside tx, ordered by id.
func boltOrgAgents(tx *bolt.Tx, org string) ([]*state.Agent, error) {
	prefix := boltAgentOrgKey(org, "")
	ab := tx.Bucket(boltBktAgent)
	var out []*state.Agent
	c := tx.Bucket(boltBktAgentOrg).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		v := ab.Get(k[len(prefix):])
		if v == nil {
			continue
		}
		a, err := boltDecodeAgent(v)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// boltDeleteAgentTx deletes agent a's record, org index entry, current
// access token and (when it still points at a) signing-key index entry.
func boltDeleteAgentTx(tx *bolt.Tx, a *state.Agent) error {
	for _, d := range []struct{ b, k []byte }{
		{boltBktAgent, []byte(a.ID)},
		{boltBktAgentOrg, boltAgentOrgKey(a.OrgID, a.ID)},
		{boltBktAccess, a.AccessTokenHash[:]},
	} {
		if err := tx.Bucket(d.b).Delete(d.k); err != nil {
			return err
		}
	}
	kb := tx.Bucket(boltBktAgentKey)
	if owner := kb.Get(a.SigningPublicKey[:]); owner != nil && string(owner) == a.ID {
		return kb.Delete(a.SigningPublicKey[:])
	}
	return nil
}

// Register implements state.Registration in one write transaction: token
// checks, the replaced agents' deletion, the per-org count and the new
// agent commit together or not at all.
func (s *State) Register(ctx context.Context, h state.TokenHash, a *state.Agent, now time.Time, maxPerOrg int) (state.RegisterResult, error) {
	if err := ctx.Err(); err != nil {
		return state.RegisterResult{}, err
	}
	rec, err := json.Marshal(a)
	if err != nil {
		return state.RegisterResult{}, fmt.Errorf("encode agent: %w", err)
	}
	acc, err := json.Marshal(boltAccess{Agent: a.ID, Org: a.OrgID})
	if err != nil {
		return state.RegisterResult{}, fmt.Errorf("encode access token: %w", err)
	}
	clock := s.now()
	var res state.RegisterResult
	err = s.db.Update(func(tx *bolt.Tx) error {
		res = state.RegisterResult{Mode: state.RegistrationAdd, Replaced: []*state.Agent{}}
		rb := tx.Bucket(boltBktRegTok)
		v := rb.Get(h[:])
		if v == nil {
			return state.ErrNotFound
		}
		exp, p, ok := boltSplitExp(v)
		if !ok || !clock.Before(exp.Add(state.UsedRegistrationTokenRetention)) {
			return state.ErrNotFound // past retention: forgotten
		}
		var rt boltRegToken
		if err := json.Unmarshal(p, &rt); err != nil {
			return fmt.Errorf("decode registration token: %w", err)
		}
		if rt.Org != a.OrgID {
			return state.ErrNotFound
		}
		if rt.Used {
			return state.ErrUsed
		}
		if rt.Exp <= now.UnixMilli() {
			return state.ErrExpired
		}
		replace := rt.Mode == string(state.RegistrationReplace)
		gone := map[string]bool{}
		if replace {
			res.Mode = state.RegistrationReplace
			others, err := boltOrgAgents(tx, a.OrgID)
			if err != nil {
				return err
			}
			res.Replaced = append(res.Replaced, others...)
			for _, o := range others {
				gone[o.ID] = true
			}
		}
		kb := tx.Bucket(boltBktAgentKey)
		if owner := kb.Get(a.SigningPublicKey[:]); owner != nil && !gone[string(owner)] {
			return state.ErrAgentExists
		}
		if !replace && maxPerOrg > 0 && boltCountAgents(tx, a.OrgID) >= maxPerOrg {
			return state.ErrOrgFull
		}
		ab := tx.Bucket(boltBktAgent)
		if ab.Get([]byte(a.ID)) != nil && !gone[a.ID] {
			return fmt.Errorf("agent id %s: %w", a.ID, state.ErrConflict)
		}
		for _, o := range res.Replaced {
			if err := boltDeleteAgentTx(tx, o); err != nil {
				return err
			}
		}
		rt.Used = true
		np, err := json.Marshal(rt)
		if err != nil {
			return fmt.Errorf("encode registration token: %w", err)
		}
		if err := rb.Put(h[:], boltExp(exp, np)); err != nil {
			return err
		}
		if err := kb.Put(a.SigningPublicKey[:], []byte(a.ID)); err != nil {
			return err
		}
		if err := ab.Put([]byte(a.ID), rec); err != nil {
			return err
		}
		if err := tx.Bucket(boltBktAgentOrg).Put(boltAgentOrgKey(a.OrgID, a.ID), nil); err != nil {
			return err
		}
		return tx.Bucket(boltBktAccess).Put(a.AccessTokenHash[:], boltExp(a.AccessTokenExpiresAt, acc))
	})
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrUsed), errors.Is(err, state.ErrExpired), errors.Is(err, state.ErrAgentExists), errors.Is(err, state.ErrOrgFull):
		return state.RegisterResult{}, err
	default:
		return state.RegisterResult{}, fmt.Errorf("register agent: %w", err)
	}
}

// PutMintGrant implements state.Registration.
func (s *State) PutMintGrant(ctx context.Context, h state.TokenHash, orgID string, expiresAt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(boltBktMint).Put(h[:], boltExp(expiresAt, []byte(orgID)))
	})
	if err != nil {
		return fmt.Errorf("put mint grant: %w", err)
	}
	return nil
}

// ConsumeMintGrant implements state.Registration.
func (s *State) ConsumeMintGrant(ctx context.Context, h state.TokenHash, now time.Time) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var org string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBktMint)
		v := b.Get(h[:])
		if v == nil {
			return state.ErrNotFound
		}
		exp, p, ok := boltSplitExp(v)
		if !ok {
			return errors.New("malformed mint grant")
		}
		org = string(p)
		if err := b.Delete(h[:]); err != nil {
			return err
		}
		if !now.Before(exp) {
			return state.ErrExpired
		}
		return nil
	})
	switch {
	case err == nil:
		return org, nil
	case errors.Is(err, state.ErrNotFound), errors.Is(err, state.ErrExpired):
		// An expired grant stays (the transaction rolled back) until
		// Cleanup sweeps it; it keeps answering ErrExpired.
		return "", err
	}
	return "", fmt.Errorf("consume mint grant: %w", err)
}

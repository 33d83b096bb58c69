package state

import (
	"context"
	"fmt"
	"time"
)

// RegistrationMode says what registering with a registration token does to
// the org's other agents.
type RegistrationMode string

// Registration modes.
const (
	// RegistrationAdd adds the new agent next to the org's agents (the
	// default, and the mode of every token PutRegistrationToken stores).
	RegistrationAdd RegistrationMode = "add"
	// RegistrationReplace creates the new agent and deletes every other
	// agent of the org in the same atomic step.
	RegistrationReplace RegistrationMode = "replace"
)

// DefaultMintGrantTTL is how long the install page's "replace the current
// agents" mint grant stays valid.
const DefaultMintGrantTTL = 10 * time.Minute

// ParseRegistrationMode accepts "add" (or "") and "replace".
func ParseRegistrationMode(s string) (RegistrationMode, error) {
	switch RegistrationMode(s) {
	case "", RegistrationAdd:
		return RegistrationAdd, nil
	case RegistrationReplace:
		return RegistrationReplace, nil
	}
	return "", fmt.Errorf("registration mode: want %q or %q", RegistrationAdd, RegistrationReplace)
}

// RegisterResult is what Registration.Register did.
type RegisterResult struct {
	// Mode is the mode of the consumed token.
	Mode RegistrationMode
	// Replaced are the agents a replace token deleted (records as they
	// were), ordered by id; empty for an add token.
	Replaced []*Agent
}

// Registration mints registration tokens with a mode and registers agents
// with them; the install page's mint grants (one-time secrets that let the
// OAuth-proven browser session mint a replace token by POST) live here too.
type Registration interface {
	// PutRegistrationTokenMode stores a registration token hash for orgID
	// with mode (PutRegistrationToken is mode RegistrationAdd).
	PutRegistrationTokenMode(ctx context.Context, h TokenHash, orgID string, mode RegistrationMode, expiresAt time.Time) error
	// Register is Agents.RegisterAgent honouring the token's mode: with a
	// RegistrationReplace token it also deletes, in the same atomic step,
	// every other agent of a.OrgID (record, access token, signing-key
	// index) and returns them; maxPerOrg is checked after that deletion.
	// Errors as RegisterAgent's; on error nothing is changed.
	Register(ctx context.Context, h TokenHash, a *Agent, now time.Time, maxPerOrg int) (RegisterResult, error)
	// PutMintGrant stores a one-time mint grant hash for orgID until
	// expiresAt.
	PutMintGrant(ctx context.Context, h TokenHash, orgID string, expiresAt time.Time) error
	// ConsumeMintGrant deletes the grant and returns its org:
	// ErrNotFound when unknown or already consumed, ErrExpired when past
	// its expiry at now.
	ConsumeMintGrant(ctx context.Context, h TokenHash, now time.Time) (orgID string, err error)
}

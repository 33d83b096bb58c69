// Package audit is the broker's tamper-evident log of every use of a stored
// Slack credential and every change of trust (installs, registrations,
// revocations, relayed calls, token refreshes).
//
// Records form one HMAC-SHA256 chain per broker process ("chain"): each
// record's MAC covers the record's canonical encoding and the previous
// record's MAC, under a key derived from the broker's Ed25519 signing seed.
// A chain id is random per process start, so replicas and restarts append
// without any shared lock. Every N records, every T seconds and on Close the
// Log writes a checkpoint: the chain's head (chain id, sequence number, MAC)
// signed with the broker's Ed25519 key. Verify walks every chain and names
// the first bad sequence number: an edited, removed, reordered or truncated
// record, or a checkpoint whose signature does not verify.
//
// Records carry metadata only (kind, org, agent, method, channel, outcome,
// Slack error code, byte counts); never arguments, message text or tokens.
// The package knows nothing of the broker or of storage engines: engines
// implement Store (see store/redisstore and store/boltstore) and prove it
// with the conformance suite in audit/audittest.
package audit

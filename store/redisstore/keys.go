package redisstore

import "strings"

// The Redis key layout. This file is the only place that builds keys; the
// table in docs/architecture.md lists the same patterns and a test
// (keys_test.go) checks that it does. <prefix> is the configured prefix
// (the broker's --redis-prefix, default "sealrelay:"); Open puts the state
// under <prefix>st: and the inboxes under <prefix>q:.
//
// State keys share the hash tag {state}, so they live in one Cluster slot
// and the multi-key scripts work on Cluster; each inbox's keys share the
// hash tag {<agent>}, so an inbox is one slot and inboxes spread over the
// cluster.
const (
	// stateNamespace and inboxNamespace follow the configured prefix.
	stateNamespace = "st:"
	inboxNamespace = "q:"
	// stateTag is appended to a state prefix that holds no hash tag.
	stateTag = "{state}:"
)

// stateKeys builds the keys of a State, all under p = <state prefix>{state}:.
type stateKeys struct{ p string }

// newStateKeys returns the state layout under prefix (e.g.
// "sealrelay:st:"), adding the {state} hash tag unless prefix holds one.
func newStateKeys(prefix string) stateKeys {
	if !strings.Contains(prefix, "{") {
		prefix += stateTag
	}
	return stateKeys{p: prefix}
}

// inst is installation org (JSON; tokens as keyring envelopes).
func (k stateKeys) inst(org string) string { return k.p + "inst:" + org }

// insts is the set of org ids with an installation.
func (k stateKeys) insts() string { return k.p + "insts" }

// regToken is a registration token {org, exp, used}, hash in hex.
func (k stateKeys) regToken(hash string) string { return k.p + "rtok:" + hash }

// mintGrant is the install page's one-time grant to mint a replace
// token: "<expiry ms> <org>", hash in hex.
func (k stateKeys) mintGrant(hash string) string { return k.p + "mintgrant:" + hash }

// agent is agent id (JSON, public keys only).
func (k stateKeys) agent(id string) string { return k.p + "agent:" + id }

// orgAgents is the hash agent id → agent JSON of org.
func (k stateKeys) orgAgents(org string) string { return k.p + "agents:" + org }

// agentKey is the agent id by signing key (hex), the uniqueness index.
func (k stateKeys) agentKey(sigHex string) string { return k.p + "agentkey:" + sigHex }

// accessToken is an access token {agent, org, exp}, hash in hex.
func (k stateKeys) accessToken(hash string) string { return k.p + "atok:" + hash }

// oauthState is a pending OAuth state, hash in hex.
func (k stateKeys) oauthState(hash string) string { return k.p + "oauth:" + hash }

// event is the dedup record of a Slack event id ("p" pending, "d" done).
func (k stateKeys) event(part string) string { return k.p + "evt:" + part }

// nonce is the replay record of a send nonce of agent.
func (k stateKeys) nonce(agent, part string) string { return k.p + "nonce:" + agent + ":" + part }

// usedSig is the replay record of a one-time signature, hash in hex.
func (k stateKeys) usedSig(hash string) string { return k.p + "usig:" + hash }

// lastPull is unix milliseconds of the agent's last recorded pull.
func (k stateKeys) lastPull(agent string) string { return k.p + "lastpull:" + agent }

// bucket is the token bucket {t, ts} named key.
func (k stateKeys) bucket(key string) string { return k.p + "bucket:" + key }

// drops are the drop records of agent (see dropsScript): recorded
// counts, their event ids, the pending notice, its event ids.
func (k stateKeys) drops(agent string) []string {
	return []string{k.p + "drops:" + agent, k.p + "drops:" + agent + ":ids",
		k.p + "dropsp:" + agent, k.p + "dropsp:" + agent + ":ids"}
}

// hold is the record of held request id: <replica><org>, then a tombstone.
func (k stateKeys) hold(id string) string { return k.p + "hold:" + id }

// heldChannels prefixes the pub/sub channel of each replica's hold hub
// (<heldChannels><replica>).
func (k stateKeys) heldChannels() string { return k.p + "held:" }

// inboxKeys builds the keys of an Inbox, all under p = <inbox prefix>.
type inboxKeys struct{ p string }

// inboxKeysPerInbox is the number of KEYS each inbox contributes to a
// script.
const inboxKeysPerInbox = 8

// inbox returns the keys of one inbox, in the order every inbox script
// takes them: seq body meta ready lease enq dead ids.
func (k inboxKeys) inbox(name string) []string {
	base := k.p + "ib:{" + name + "}:"
	return []string{base + "seq", base + "body", base + "meta", base + "ready",
		base + "lease", base + "enq", base + "dead", base + "ids"}
}

// wake is the pub/sub channel of enqueue wake-ups.
func (k inboxKeys) wake() string { return k.p + "wake" }

// registry is the sorted set of inboxes by last activity (for the sweeper).
func (k inboxKeys) registry() string { return k.p + "inboxes" }

// sweepLock is the lock one sweeper at a time holds.
func (k inboxKeys) sweepLock() string { return k.p + "sweep:lock" }

// Audit log keys, under the top-level prefix (not the state namespace).
// Every key of one chain carries the hash tag {audit:<id>}, so a chain's
// records and checkpoints share one Redis Cluster slot; the chain index is
// a key of its own (chains never need a multi-key operation across slots).

// auditKeyChains is the set of chain ids.
func auditKeyChains(prefix string) string { return prefix + "audit:chains" }

// auditKeyRecords is the list of a chain's encoded records, append order.
func auditKeyRecords(prefix, chain string) string { return prefix + "{audit:" + chain + "}:rec" }

// auditKeyCheckpoints is the list of a chain's encoded checkpoints.
func auditKeyCheckpoints(prefix, chain string) string { return prefix + "{audit:" + chain + "}:cp" }

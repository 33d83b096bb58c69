// Package broker is the public half of sealrelay: it holds the Slack
// credentials, receives Slack's webhooks, seals each one separately to every
// registered agent of the org, and serves the agent API that bridges behind
// NAT poll. It implements sections 4 and 5 of the wire protocol
// (shared/protocol.md, version 2026-02-1).
//
// # HTTP surface
//
//	GET    /slack/install          redirect to Slack's authorize URL with a one-time state
//	GET    /slack/oauth/callback   verify state, oauth.v2.access, store the installation,
//	                               show a one-time registration token and the
//	                               `bridge register` command (HTML)
//	POST   /slack/events           Events API (signature-verified, url_verification,
//	                               event_id dedup, sealed fan-out to every agent)
//	POST   /slack/interactivity    interactive payloads (form field "payload")
//	POST   /slack/commands         slash commands (form fields)
//	GET    /api/broker-pubkey      broker box and signing public keys
//	POST   /api/register           register an agent with a registration token
//	DELETE /api/register           unregister (bearer + signature)
//	POST   /api/inbox/pull         lease messages, long poll up to 25 s
//	POST   /api/inbox/ack          remove leased messages by message id
//	POST   /api/send               decrypt and forward chat.postMessage,
//	                               chat.update, reactions.add to Slack
//	GET    /healthz                process up
//	GET    /readyz                 store reachable and keys loaded
//
// Prometheus metrics are served by MetricsHandler, meant for a separate
// listener. Every error is JSON {"ok":false,"error":"..."} with the status
// and phrases of the protocol.
//
// # Storage
//
// Inboxes live in a queue.Store; everything else (installations, agents,
// hashed tokens, replay records, rate-limit buckets) lives in a State
// (RedisState, or the embedded bbolt state for a single node). Bot and
// refresh tokens are stored only as crypto.Keyring envelopes bound to the org
// id; access tokens, registration tokens and OAuth states only as keyed
// hashes (see HashKey).
package broker

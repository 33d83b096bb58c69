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
//	GET    /readyz                 state and inbox stores reachable, not shutting down
//
// Prometheus metrics (sealrelay_broker_*) are served by MetricsHandler, meant
// for a separate listener. Every JSON response carries "ok"; every error is
// {"ok":false,"error":"..."} with the status and phrases of the protocol
// (unknown paths 404, wrong methods 405, also JSON). The OAuth pages are
// HTML.
//
// # Ingress
//
// A Slack request is answered 401 unless its v0 signature and timestamp (±5
// minutes) verify, 413 over 1 MiB. Events are de-duplicated by event_id in
// the shared state.Store (a retry that arrives while the first attempt is still
// storing gets 503, so Slack retries again later). The payload, byte for
// byte, becomes the generic envelope's payload; it is sealed to each active
// agent (one whose access token has not expired) and signed, and the broker
// answers 200 only after every copy is stored. A full inbox drops only that
// agent's copy (counted, logged); any other store failure answers 503 and
// releases the event id. app_uninstalled and bot tokens_revoked mark the
// installation revoked and delete its tokens; they and app_rate_limited
// reach agents as "system" envelopes of that type.
//
// # Agent API
//
// Authentication follows protocol §4.4 in its exact order. Send nonces are
// remembered per agent for 600 s and unregister signatures for 600 s in the
// shared state.Store, so a replay is refused on every replica; pulls and acks are
// idempotent and never replay-checked. Sends also pass a per-agent token
// bucket (Config.SendRate, default 1/s, burst 20) kept in the state.Limiter. Slack
// errors come back as 502 with Slack's code, Slack rate limits as 429 with
// Retry-After; token_revoked, invalid_auth and account_inactive mark the
// installation revoked. Rotating bot tokens are refreshed
// Config.TokenRefreshMargin (default 2 h) before they expire, single-flight
// across replicas (a lease in the installation record) and per org within
// a process; installation changes are atomic read-modify-writes
// (state.Installations.UpdateInstallation), so a revoke during a refresh stays.
//
// # Storage
//
// Inboxes live in a queue.Store (one inbox per agent, named by agent id);
// everything else (installations, agents, hashed tokens, replay records,
// rate-limit buckets, drop records, held requests) lives in a state.Store.
// The broker knows no storage engine: cmd/broker opens one
// (store/redisstore for replicas sharing Redis, store/boltstore for a
// single node) and passes its state and inboxes to New. Bot and refresh
// tokens are stored only as crypto.Keyring envelopes bound to the org id;
// access tokens, registration
// tokens, OAuth states and unregister signatures only as keyed hashes (see
// HashKey). Plaintext bot tokens and message bodies exist only in memory
// for the duration of one request, and the buffers the broker owns are
// wiped afterwards; nothing logs tokens or bodies.
package broker

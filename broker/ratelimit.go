package broker

import (
	"strings"

	"github.com/sealrelay/sealrelay/state"
)

// Method classes of /api/call, each with its own per-agent token bucket.
const (
	CallClassPost  = "post"
	CallClassRead  = "read"
	CallClassOther = "other"
)

// RateLimit is a token bucket setting of Config (Rate tokens per second,
// at most Burst), the bucket the state.Limiter enforces.
type RateLimit = state.RateLimit

// Default per-agent /api/call limits. They sit above what Slack allows one
// app (chat.postMessage: about 1/s per channel with short bursts; Tier 3–4
// read methods: 50–100+ per minute; Tier 2–4 for the rest), so a single
// well-behaved agent meets Slack's own 429 first, which the broker passes
// through with Slack's Retry-After; the broker's buckets stop a runaway
// agent before Slack throttles the whole installation.
var (
	DefaultCallPostRate  = RateLimit{Rate: 10, Burst: 200}
	DefaultCallReadRate  = RateLimit{Rate: 10, Burst: 200}
	DefaultCallOtherRate = RateLimit{Rate: 5, Burst: 100}
)

// readSuffixes are the last name segments of read-only methods.
var readSuffixes = map[string]bool{
	"info": true, "list": true, "history": true, "replies": true, "members": true,
	"conversations": true, "lookupByEmail": true, "test": true, "get": true, "getPermalink": true,
}

// CallClass returns the rate-limit class of a Slack method: read for
// methods that only read (…info, …list, conversations.history, auth.test,
// …), post for messaging writes (chat.*, reactions.add/remove, pins.add/
// remove, files.completeUploadExternal), other for everything else (views,
// assistant threads, files.getUploadURLExternal, conversations.open, …).
func CallClass(method string) string {
	last := method[strings.LastIndexByte(method, '.')+1:]
	switch {
	case readSuffixes[last]:
		return CallClassRead
	case strings.HasPrefix(method, "chat."), method == "reactions.add", method == "reactions.remove",
		method == "pins.add", method == "pins.remove", method == "files.completeUploadExternal":
		return CallClassPost
	}
	return CallClassOther
}

// callLimit returns the configured bucket of a class.
func (c Config) callLimit(class string) RateLimit {
	switch class {
	case CallClassPost:
		return c.CallPostRate
	case CallClassRead:
		return c.CallReadRate
	}
	return c.CallOtherRate
}

// orDefault fills a zero Rate or Burst of l from d.
func orDefault(l, d RateLimit) RateLimit {
	if l.Rate == 0 {
		l.Rate = d.Rate
	}
	if l.Burst <= 0 {
		l.Burst = d.Burst
	}
	return l
}

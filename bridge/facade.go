package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/boundedcache"
	"github.com/sealrelay/sealrelay/protocol"
)

// WebAPIPrefix is the path under which the local listener serves Slack's
// Web API: http://127.0.0.1:7890/api/<method>.
const WebAPIPrefix = "/api/"

// Outcomes of a Web API call (the outcome label of
// sealrelay_bridge_webapi_calls_total).
const (
	outcomeOK          = "ok"           // Slack answered ok:true
	outcomeCached      = "cached"       // auth.test served from the cache
	outcomeSlackError  = "slack_error"  // Slack answered ok:false
	outcomeNotAllowed  = "not_allowed"  // broker policy refused it
	outcomeRateLimited = "rate_limited" // broker or Slack rate limit
	outcomeUnavailable = "unavailable"  // broker or Slack unreachable
	outcomeBrokerAuth  = "broker_auth"  // broker refused the bridge's credentials
	outcomeInvalid     = "invalid"      // refused locally: bad request
	outcomeUnknown     = "unknown_method"
	outcomeUnauthed    = "unauthorized" // local API token missing or wrong
	outcomeForbidden   = "forbidden"    // browser or Host check
)

// authTestTTL is how long a successful auth.test answer is served from the
// cache. Failures are never cached.
const authTestTTL = time.Hour

// webAPI serves Slack's Web API to the local app and relays each call
// through the broker's POST /api/call.
type webAPI struct {
	b       *Bridge
	origins map[string]bool
	calls   *prometheus.CounterVec

	// auth holds the last successful auth.test answer for authTestTTL
	// (internal/boundedcache, one entry).
	auth     *boundedcache.Cache[struct{}, []byte]
	mu       sync.Mutex
	inflight *authFetch
}

// authFetch is one auth.test relay in progress; concurrent auth.test calls
// wait for it instead of starting their own.
type authFetch struct {
	done chan struct{}
	body []byte
	err  error
}

func newWebAPI(b *Bridge) *webAPI {
	a := &webAPI{b: b, origins: map[string]bool{},
		auth: boundedcache.New(boundedcache.Options[struct{}, []byte]{Max: 1, TTL: authTestTTL, Now: func() time.Time { return b.cfg.Now() }})}
	for _, o := range b.cfg.WebAPIAllowedOrigins {
		if n, err := normalizeOrigin(o); err == nil {
			a.origins[n] = true
		}
	}
	a.calls = b.metrics.webapiCalls
	return a
}

// withWebAPI sends requests under WebAPIPrefix to the Web API facade, which
// has its own guard (Slack-style answers), and everything else to next.
func (b *Bridge) withWebAPI(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, WebAPIPrefix) {
			b.webapi.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == SocketModePath {
			b.sm.serveWS(w, r) // authenticated by its ticket (socketmode.go)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP answers one Web API request of the app in Slack's form.
func (a *webAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, WebAPIPrefix)
	if e := a.checkBrowser(w, r); e != nil {
		a.finish(w, "", e)
		return
	}
	if r.Method == http.MethodOptions {
		// Preflight of an explicitly allowed origin (checkBrowser passed).
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		a.finish(w, "", &apiError{status: http.StatusMethodNotAllowed, code: "invalid_http_method", detail: "use GET or POST", outcome: outcomeInvalid})
		return
	}
	if protocol.ValidateMethod(method) != nil {
		a.finish(w, "", &apiError{status: http.StatusOK, code: "unknown_method", outcome: outcomeUnknown})
		return
	}
	if method == "apps.connections.open" {
		a.serveConnectionsOpen(w, r) // answered here, never relayed (socketmode.go)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxCallArgsSize+1)
	c, e := parseWebAPIRequest(r, MaxCallArgsSize)
	if e != nil {
		a.finish(w, method, e)
		return
	}
	if want := a.b.cfg.LocalToken; want != "" {
		switch {
		case c.token == "":
			a.finish(w, method, &apiError{status: http.StatusOK, code: "not_authed", detail: "send the local API token as Authorization: Bearer <token>", outcome: outcomeUnauthed})
			return
		case !crypto.EqualString(c.token, want):
			a.finish(w, method, &apiError{status: http.StatusOK, code: "invalid_auth", detail: "the token is not this bridge's local API token", outcome: outcomeUnauthed})
			return
		}
	}
	var body []byte
	var err error
	cached := false
	if method == "auth.test" {
		body, cached, err = a.identity(r.Context())
	} else {
		body, err = a.b.Call(r.Context(), method, c.encoding, c.args)
		defer crypto.Wipe(body) // Slack's answer: gone once written
	}
	if err != nil {
		a.finish(w, method, a.callError(method, err))
		return
	}
	outcome := outcomeOK
	var st struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &st)
	switch {
	case cached:
		outcome = outcomeCached
	case !st.OK:
		outcome = outcomeSlackError
	}
	a.count(method, outcome)
	attrs := []any{"method", method, "outcome", outcome}
	if !st.OK && protocol.IsSlackErrorCode(st.Error) {
		attrs = append(attrs, "slack_error", st.Error)
	}
	a.b.log.Debug("web api call", attrs...)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// checkBrowser applies the listener's defences in the facade's terms: the
// Host must name the loopback listen address (DNS rebinding), and a request
// with browser headers (Origin, Sec-Fetch-Site) is refused unless its Origin
// was allowed explicitly — a form POST needs no CORS preflight, so without
// this any web page could call Slack as the bot. Sec-Fetch-Mode alone is not
// a browser: Node's fetch (undici, used by @slack/web-api 8 and so by Bolt
// for JavaScript) sends "Sec-Fetch-Mode: cors" on every request, while
// browsers always send Sec-Fetch-Site, and Origin on every POST.
func (a *webAPI) checkBrowser(w http.ResponseWriter, r *http.Request) *apiError {
	if !a.b.cfg.AllowRemote {
		_, port, _ := net.SplitHostPort(a.b.cfg.ListenAddr)
		if !allowedHost(r.Host, port) {
			return &apiError{status: http.StatusForbidden, code: "forbidden_host", detail: "the Web API answers only to 127.0.0.1, localhost or [::1] on its own port", outcome: outcomeForbidden}
		}
	}
	origin := r.Header.Get("Origin")
	if origin != "" {
		n, err := normalizeOrigin(origin)
		if err != nil || !a.origins[n] {
			return &apiError{status: http.StatusForbidden, code: "forbidden_origin", detail: "the Web API does not answer web pages; allow an origin with --web-api-allow-origin", outcome: outcomeForbidden}
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Set("Access-Control-Expose-Headers", "Retry-After")
		w.Header().Add("Vary", "Origin")
		return nil
	}
	if r.Header.Get("Sec-Fetch-Site") != "" {
		return &apiError{status: http.StatusForbidden, code: "forbidden_browser", detail: "the Web API does not answer browsers (Sec-Fetch-Site without an allowed Origin)", outcome: outcomeForbidden}
	}
	return nil
}

// callError turns a failed relay into Slack's form: a policy refusal is
// HTTP 200 ok:false (SDKs retry any other status for minutes), a rate limit
// is 429 with Retry-After, and anything that might work later is 503
// slack_unavailable, which SDKs retry as when Slack is down.
func (a *webAPI) callError(method string, err error) *apiError {
	unavailable := &apiError{status: http.StatusServiceUnavailable, code: protocol.ErrSlackUnavailable, outcome: outcomeUnavailable}
	var be *BrokerError
	switch {
	case errors.Is(err, ErrCallTooLarge):
		return tooLarge()
	case errors.Is(err, ErrBrokerFault):
		a.b.log.Error("web api call: unusable broker answer", "method", method, "err", err)
		return unavailable
	case errors.As(err, &be):
		switch be.Outcome() {
		case protocol.SendNotAllowed:
			a.b.log.Warn("web api call refused by the broker's policy", "method", method, "error", be.Message)
			return &apiError{status: http.StatusOK, code: be.Message, outcome: outcomeNotAllowed}
		case protocol.SendRateLimited:
			return &apiError{status: http.StatusTooManyRequests, code: "ratelimited", retryAfter: retryAfterSeconds(be.RetryAfter), outcome: outcomeRateLimited}
		case protocol.SendUnauthorized:
			a.b.log.Error("web api call: the broker refused the bridge's credentials; run `bridge register` again", "method", method, "status", be.Status, "error", truncate(be.Message, 200))
			return &apiError{status: http.StatusOK, code: "invalid_auth", detail: "the broker refused this bridge's credentials; the bridge must be registered again", outcome: outcomeBrokerAuth}
		case protocol.SendTooLarge:
			return tooLarge()
		case protocol.SendNotFound:
			a.b.log.Error("web api call: the broker does not serve POST /api/call (sealrelay protocol §8.1); upgrade it", "method", method, "status", be.Status)
			return &apiError{status: http.StatusOK, code: "not_supported", detail: "the broker does not relay Web API calls (POST /api/call); upgrade the broker", outcome: outcomeInvalid}
		case protocol.SendInvalid:
			a.b.log.Warn("web api call: the broker refused the request", "method", method, "error", truncate(be.Message, 200))
			return &apiError{status: http.StatusOK, code: "invalid_arguments", detail: "the broker refused the request: " + truncate(be.Message, 200), outcome: outcomeInvalid}
		}
		// SendReplay, SendSlackError (slack_unavailable, token_revoked),
		// SendUnavailable: may work later.
		a.b.log.Warn("web api call: broker or Slack unavailable", "method", method, "status", be.Status, "outcome", be.Outcome(), "error", truncate(be.Message, 200))
		return unavailable
	}
	switch {
	case errors.Is(err, context.Canceled):
		a.b.log.Debug("web api call: the app went away", "method", method)
	case errors.Is(err, ErrUnreachable):
		a.b.log.Warn("web api call: broker unreachable", "method", method, "err", err)
	default:
		a.b.log.Error("web api call failed", "method", method, "err", err)
	}
	return unavailable
}

// retryAfterSeconds passes a delay-seconds Retry-After on and turns anything
// else (absent, an HTTP date) into 1: SDKs need a number.
func retryAfterSeconds(v string) string {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return "1"
	}
	return strconv.Itoa(min(n, 3600))
}

// finish writes e in Slack's form and counts it.
func (a *webAPI) finish(w http.ResponseWriter, method string, e *apiError) {
	a.count(method, e.outcome)
	if e.outcome != outcomeUnavailable && e.outcome != outcomeNotAllowed && e.outcome != outcomeBrokerAuth {
		m := method
		if m == "" {
			m = "-"
		}
		a.b.log.Info("web api call refused", "method", m, "outcome", e.outcome, "error", e.code)
	}
	if e.retryAfter != "" {
		w.Header().Set("Retry-After", e.retryAfter)
	}
	out := map[string]any{"ok": false, "error": e.code}
	if e.detail != "" {
		out["detail"] = e.detail
	}
	writeJSON(w, e.status, out)
}

func (a *webAPI) count(method, outcome string) {
	a.calls.WithLabelValues(methodClass(method), outcome).Inc()
}

// methodFamilies are Slack's Web API method families; other prefixes are
// counted as "other" so that arbitrary names cannot grow the metric.
var methodFamilies = map[string]bool{
	"admin": true, "api": true, "apps": true, "assistant": true, "auth": true, "bookmarks": true, "bots": true,
	"calls": true, "canvases": true, "chat": true, "conversations": true, "dialog": true, "dnd": true, "emoji": true,
	"files": true, "functions": true, "lists": true, "migration": true, "oauth": true, "openid": true, "pins": true,
	"reactions": true, "reminders": true, "rtm": true, "search": true, "stars": true, "team": true, "tooling": true,
	"usergroups": true, "users": true, "views": true, "workflows": true,
}

func methodClass(method string) string {
	fam, _, _ := strings.Cut(method, ".")
	if methodFamilies[fam] {
		return fam
	}
	if method == "" {
		return "none"
	}
	return "other"
}

// identity answers auth.test from the installation's real identity: one
// auth.test relayed through the broker, cached for authTestTTL. Concurrent
// callers share one relay; a failure (or a Slack ok:false) is returned but
// not cached, so the next call tries again.
func (a *webAPI) identity(ctx context.Context) (body []byte, cached bool, err error) {
	a.mu.Lock()
	if body, ok := a.auth.Get(struct{}{}); ok {
		a.mu.Unlock()
		return body, true, nil
	}
	f := a.inflight
	leader := f == nil
	if leader {
		f = &authFetch{done: make(chan struct{})}
		a.inflight = f
	}
	a.mu.Unlock()
	if leader {
		// Not the caller's context: the waiters share this fetch.
		f.body, f.err = a.b.Call(context.WithoutCancel(ctx), "auth.test", protocol.EncodingForm, json.RawMessage("{}"))
		var st struct {
			OK bool `json:"ok"`
		}
		a.mu.Lock()
		if f.err == nil && json.Unmarshal(f.body, &st) == nil && st.OK {
			a.auth.Put(struct{}{}, f.body)
		}
		a.inflight = nil
		a.mu.Unlock()
		close(f.done)
		return f.body, false, f.err
	}
	select {
	case <-f.done:
		return f.body, false, f.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

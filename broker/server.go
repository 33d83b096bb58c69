package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
)

// Server is the broker's HTTP server. Create it with New, serve Handler()
// (usually through HTTPServer), serve MetricsHandler() on a separate
// listener, and call Shutdown when stopping.
type Server struct {
	cfg  Config
	st   state.Store
	q    queue.Store
	keys Keys
	hk   *HashKey
	log  *slog.Logger

	gatherer prometheus.Gatherer
	m        *metrics
	cm       *callMetrics
	rm       *respondMetrics
	am       *auditMetrics
	depth    *depthCollector

	shared    *crypto.SharedKeyCache
	slackHTTP *http.Client
	handler   http.Handler

	shutdown     chan struct{}
	shutdownOnce sync.Once
	pollWG       sync.WaitGroup

	pollsMu sync.Mutex
	polls   map[string]int // agent id → waiting pulls
	closing bool           // set by Shutdown; no new long polls after it

	refreshLocks keyedLock // one bot token refresh per org in this process
	pullMarks    pullMarks // last pull writes per agent (admin_server.go)
	revokeWatch  pollWatch // waiting pulls per agent, ended by a revoke (admin_server.go)

	idle *idleFanout // last-pull cache of the paused fan-out (idle.go)

	pullSigs *pullSigCache // last verified pull signature per agent (agentapi.go)

	knownOrgs sync.Map // installation ids seen to exist (see routeOrg)

	// onLongPoll, when set (tests), is called when a pull starts waiting.
	onLongPoll func(agentID string)

	holds  state.HoldHub  // held Slack requests (protocol §8.2, held.go)
	holdWG sync.WaitGroup // held requests in flight; joined under pollsMu like pollWG
}

// New builds a Server. st and q must be ready to use; the Server does not
// close them. logger nil means slog.Default(); registry nil means a private
// registry (served by MetricsHandler either way).
func New(cfg Config, st state.Store, q queue.Store, keys Keys, logger *slog.Logger, registry prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := keys.validate(); err != nil {
		return nil, err
	}
	if st == nil || q == nil {
		return nil, errors.New("broker: New needs a state.Store and a queue.Store")
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.Default()
	}
	if keys.HashKey == nil {
		hk, err := DeriveHashKey(keys.Signing)
		if err != nil {
			return nil, fmt.Errorf("broker: derive token hash key: %w", err)
		}
		keys.HashKey = hk
	}
	var gatherer prometheus.Gatherer
	if registry == nil {
		r := prometheus.NewRegistry()
		registry, gatherer = r, r
	} else if g, ok := registry.(prometheus.Gatherer); ok {
		gatherer = g
	} else {
		gatherer = prometheus.DefaultGatherer
	}
	depth := newDepthCollector(q)
	m, err := newMetrics(registry, depth)
	if err != nil {
		return nil, fmt.Errorf("broker: register metrics: %w", err)
	}
	cm, err := newCallMetrics(registry)
	if err != nil {
		return nil, fmt.Errorf("broker: register call metrics: %w", err)
	}
	rm, err := newRespondMetrics(registry)
	if err != nil {
		return nil, fmt.Errorf("broker: register respond metrics: %w", err)
	}
	am, err := newAuditMetrics(registry)
	if err != nil {
		return nil, fmt.Errorf("broker: register audit metrics: %w", err)
	}
	idle, err := newIdleFanout(registry)
	if err != nil {
		return nil, fmt.Errorf("broker: register fan-out metrics: %w", err)
	}
	holds, err := st.NewHoldHub(logger.With("component", "broker.holds"))
	if err != nil {
		return nil, fmt.Errorf("broker: hold hub: %w", err)
	}
	s := &Server{
		cfg: cfg, st: st, q: q, keys: keys, hk: keys.HashKey,
		log:      logger.With("component", "broker"),
		gatherer: gatherer, m: m, cm: cm, rm: rm, am: am, depth: depth, holds: holds, idle: idle,
		shared:   crypto.NewSharedKeyCache(keys.Box, 0),
		pullSigs: newPullSigCache(),
		slackHTTP: &http.Client{
			Timeout: cfg.SlackTimeout,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   5 * time.Second,
				ResponseHeaderTimeout: cfg.SlackTimeout,
				MaxIdleConnsPerHost:   32,
				IdleConnTimeout:       90 * time.Second,
				ForceAttemptHTTP2:     true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		shutdown: make(chan struct{}),
		polls:    map[string]int{},
	}
	s.handler = s.routes()
	return s, nil
}

// Handler returns the broker's HTTP handler (Slack and agent endpoints,
// health checks).
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves the Prometheus metrics; mount it on a separate,
// non-public listener.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
}

// HTTPServer returns an http.Server for Handler with timeouts that keep slow
// or idle clients from holding connections while letting 25-second long
// polls finish.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      LongPollMax + 15*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// Shutdown releases every waiting long poll (they answer with what they
// have, usually an empty list) and waits for them to return or ctx to end.
// Call it before (or together with) http.Server.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.pollsMu.Lock()
	s.closing = true
	s.pollsMu.Unlock()
	s.shutdownOnce.Do(func() { close(s.shutdown) })
	done := make(chan struct{})
	go func() {
		s.pollWG.Wait()
		s.holdWG.Wait() // held Slack requests end by their deadline
		_ = s.holds.Close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker shutdown: %w", ctx.Err())
	}
}

func (s *Server) now() time.Time { return s.cfg.Now() }

// --- request plumbing -----------------------------------------------------

type ctxKey struct{}

// reqInfo carries per-request log fields; handlers fill in org_id.
type reqInfo struct {
	id    string
	route string
	org   string
	agent string
}

func info(ctx context.Context) *reqInfo {
	if ri, ok := ctx.Value(ctxKey{}).(*reqInfo); ok {
		return ri
	}
	return &reqInfo{}
}

// logger returns the request's logger (request id, route, org, agent).
func (s *Server) logger(ctx context.Context) *slog.Logger {
	ri := info(ctx)
	l := s.log.With("request_id", ri.id, "route", ri.route)
	if ri.org != "" {
		l = l.With("org_id", ri.org)
	}
	if ri.agent != "" {
		l = l.With("agent_id", ri.agent)
	}
	return l
}

// validRequestID reports whether a client's X-Request-Id is 1–64 of
// A–Z a–z 0–9 . _ - (and so safe to echo and log).
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); validRequestID(id) {
		return id
	}
	id, err := crypto.RandomToken(9)
	if err != nil {
		return "unknown"
	}
	return id
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap adds request id, panic recovery, latency metrics and an access log
// line (metadata only) around h.
func (s *Server) wrap(route string, h http.HandlerFunc) http.HandlerFunc {
	latency := newChildCache(func(code int) prometheus.Observer {
		return s.m.latency.WithLabelValues(route, strconv.Itoa(code))
	})
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: requestID(r), route: route}
		ctx := context.WithValue(r.Context(), ctxKey{}, ri)
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-Id", ri.id)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger(ctx).Error("panic in handler", "panic", fmt.Sprint(p))
				if sw.status == 0 {
					writeError(sw, http.StatusInternalServerError, "internal error")
				}
			}
			code := sw.status
			if code == 0 {
				code = http.StatusOK
			}
			dur := time.Since(start)
			latency.with(code).Observe(dur.Seconds())
			level := slog.LevelInfo
			if code >= 500 {
				level = slog.LevelWarn
			}
			if s.log.Enabled(ctx, level) {
				attrs := make([]slog.Attr, 0, 7)
				attrs = append(attrs, slog.String("request_id", ri.id), slog.String("route", ri.route))
				if ri.org != "" {
					attrs = append(attrs, slog.String("org_id", ri.org))
				}
				if ri.agent != "" {
					attrs = append(attrs, slog.String("agent_id", ri.agent))
				}
				attrs = append(attrs, slog.String("method", r.Method), slog.Int("status", code), slog.Duration("duration", dur))
				s.log.LogAttrs(ctx, level, "request", attrs...)
			}
		}()
		h(sw, r.WithContext(ctx))
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(method, path, route string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, s.wrap(route, h))
	}
	handle("GET", "/slack/install", "install", s.handleInstall)
	handle("GET", "/slack/oauth/callback", "oauth_callback", s.handleOAuthCallback)
	handle("POST", MintReplacePath, "mint_replace", s.handleMintReplace)
	handle("POST", "/slack/events", "slack_events", s.withDeadline("slack_events", s.handleSlackEvents))
	handle("POST", "/slack/interactivity", "slack_interactivity", s.withDeadline("slack_interactivity", s.handleSlackInteractivity))
	handle("POST", "/slack/commands", "slack_commands", s.withDeadline("slack_commands", s.handleSlackCommands))
	handle("GET", "/api/broker-pubkey", "broker_pubkey", s.handleBrokerPubkey)
	handle("POST", "/api/register", "register", s.handleRegister)
	handle("DELETE", "/api/register", "unregister", s.handleUnregister)
	handle("POST", "/api/inbox/pull", "pull", s.handlePull)
	handle("POST", "/api/inbox/ack", "ack", s.handleAck)
	handle("POST", "/api/send", "send", s.handleSend)
	handle("POST", "/api/call", "call", s.handleCall)
	handle("POST", "/api/inbox/respond", "respond", s.handleRespond)
	handle("POST", "/api/agent/renew", "agent_renew", s.handleRenew)
	handle("POST", "/api/agent/rekey", "agent_rekey", s.handleRekey)
	handle("GET", "/healthz", "healthz", s.handleHealthz)
	handle("GET", "/readyz", "readyz", s.handleReadyz)
	// Anything else, and known paths with another method, answer JSON.
	for _, p := range []string{"/slack/install", "/slack/oauth/callback", MintReplacePath, "/slack/events", "/slack/interactivity",
		"/slack/commands", "/api/broker-pubkey", "/api/register", "/api/inbox/pull", "/api/inbox/ack",
		"/api/send", "/api/call", "/api/inbox/respond", "/api/agent/renew", "/api/agent/rekey", "/healthz", "/readyz"} {
		mux.HandleFunc(p, s.wrap("method_not_allowed", func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		}))
	}
	mux.HandleFunc("/", s.wrap("not_found", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not found")
	}))
	return mux
}

// --- responses --------------------------------------------------------------

// apiError is a protocol error: HTTP status plus the error text.
type apiError struct {
	status     int
	msg        string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func errf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"ok":false,"error":"internal error"}`)
	}
	writeJSONBytes(w, status, append(b, '\n'))
}

// writeJSONBytes writes b, a JSON document and its trailing newline, as
// writeJSON does.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// okBody is the JSON of a bare success answer, as writeJSON writes
// map[string]any{"ok": true}.
var okBody = []byte("{\"ok\":true}\n")

// writeOK answers 200 {"ok":true}.
func writeOK(w http.ResponseWriter) { writeJSONBytes(w, http.StatusOK, okBody) }

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, protocol.ErrorResponse{OK: false, Error: msg})
}

func (s *Server) fail(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		secs := int64((e.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeError(w, e.status, e.msg)
}

// readBody reads at most protocol.MaxBodySize bytes of the body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > protocol.MaxBodySize {
		return nil, errf(http.StatusRequestEntityTooLarge, protocol.ErrBodyTooLarge)
	}
	r.Body = http.MaxBytesReader(w, r.Body, protocol.MaxBodySize)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // ReadFrom wants MinRead spare bytes
	}
	_, err := buf.ReadFrom(r.Body)
	b := buf.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(http.StatusRequestEntityTooLarge, protocol.ErrBodyTooLarge)
		}
		return nil, errf(http.StatusBadRequest, "could not read request body")
	}
	return b, nil
}

// decodeJSON reads and decodes a JSON request body into v.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *apiError {
	b, e := readBody(w, r)
	if e != nil {
		return e
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errf(http.StatusBadRequest, "%s: %s", protocol.ErrInvalidJSON, jsonErrorText(err))
	}
	return nil
}

// jsonErrorText describes a decode error without echoing input values.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("invalid %s: wrong type", te.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	return "malformed"
}

// --- health -----------------------------------------------------------------

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeOK(w)
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyzTimeout)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		s.logger(r.Context()).Warn("state store not reachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	if err := s.q.Ping(ctx); err != nil {
		s.logger(r.Context()).Warn("queue store not reachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "inbox store unavailable")
		return
	}
	select {
	case <-s.shutdown:
		writeError(w, http.StatusServiceUnavailable, "shutting down")
		return
	default:
	}
	writeOK(w)
}

func (s *Server) handleBrokerPubkey(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, protocol.BrokerPubkeyResponse{
		OK:                  true,
		BrokerPubkey:        s.keys.Box.Public.String(),
		BrokerSigningPubkey: s.keys.Signing.Public().String(),
	})
}

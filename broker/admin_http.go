package broker

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

// Admin API limits.
const (
	// maxAdminBody bounds the JSON body of an admin POST.
	maxAdminBody = 64 << 10
	// DefaultAuditTail and MaxAuditTail bound GET /admin/api/audit?n=.
	DefaultAuditTail = 50
	MaxAuditTail     = 500
	adminCallTimeout = 10 * time.Second
)

// adminCSP is the admin page's Content-Security-Policy: its own script and
// style files only, no inline code, no framing, no form posts, fetches to
// its own origin only.
const adminCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed admin_web/index.html admin_web/admin.js admin_web/admin.css
var adminWeb embed.FS

// AdminHandlerOptions configure NewAdminHandler.
type AdminHandlerOptions struct {
	// Token is the bearer token every /admin/api request must carry
	// (compared in constant time). Empty disables the check: allowed only
	// for a unix socket whose file mode keeps others out.
	Token string
	// AuditStore feeds the page's "Recent audit records" (GET
	// /admin/api/audit) and serves the raw audit API (/admin/api/audit/chains...):
	// records and checkpoints exactly as stored, for `broker audit verify`
	// to check with the operator's keys (it never trusts this answer). nil
	// answers those routes 404 "audit log is off".
	AuditStore audit.Store
	// AuditKeys are the broker's audit keys (audit.DeriveKeys of its
	// signing key), for POST /admin/api/audit/verify, which verifies
	// AuditStore on the server. nil (or a nil AuditStore) answers that
	// route 404 "audit log is off".
	AuditKeys *audit.Keys
	// PublicURL is the broker's public base URL (Config.PublicURL): the
	// mint answer carries it as broker_url, so the page can show the whole
	// `bridge register --broker-url ...` command. Empty leaves it out.
	PublicURL string
	// Logger logs one line per request (method, route, status; never the
	// token). nil means slog.Default().
	Logger *slog.Logger

	// verifyTimeout overrides auditVerifyTimeout (tests).
	verifyTimeout time.Duration
}

// NewAdminHandler serves the admin JSON API under /admin/api/ and the admin
// page at /admin/. See docs/operations.md ("Admin listener") for the routes
// and docs/security.md for the design.
func NewAdminHandler(a *Admin, opts AdminHandlerOptions) http.Handler {
	h := &adminHandler{a: a, token: opts.Token, auditStore: opts.AuditStore, auditKeys: opts.AuditKeys,
		publicURL: opts.PublicURL, verifyTimeout: opts.verifyTimeout, log: opts.Logger}
	if h.verifyTimeout <= 0 {
		h.verifyTimeout = auditVerifyTimeout
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.log = h.log.With("component", "broker.admin")
	if h.token != "" {
		h.tokenHash = crypto.SHA256([]byte(h.token))
	}
	mux := http.NewServeMux()
	api := func(method, path string, fn func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(method+" "+path, h.wrap(path, true, fn))
	}
	api("GET", "/admin/api/installations", h.installations)
	api("GET", "/admin/api/agents", h.agents)
	api("GET", "/admin/api/agents/{id}", h.agent)
	api("POST", "/admin/api/agents/{id}/revoke", h.revoke)
	api("GET", "/admin/api/agents/{id}/dead-letters", h.deadLetters)
	api("POST", "/admin/api/agents/{id}/dead-letters/redrive", h.redrive)
	api("POST", "/admin/api/agents/{id}/dead-letters/purge", h.purge)
	api("GET", "/admin/api/audit", h.auditTail)
	api("GET", "/admin/api/audit/chains", h.auditChains) // admin_audit.go
	api("GET", "/admin/api/audit/chains/{chain}/records", h.auditRecords)
	api("GET", "/admin/api/audit/chains/{chain}/checkpoints", h.auditCheckpoints)
	api("POST", "/admin/api/audit/verify", h.auditVerify) // admin_audit_verify.go
	api("POST", "/admin/api/orgs/{org}/registration-tokens", h.mintToken)
	mux.Handle("/admin/api/", h.wrap("/admin/api/", true, func(w http.ResponseWriter, r *http.Request) error {
		return adminErr(http.StatusNotFound, "no admin API route %s %s", r.Method, r.URL.Path)
	}))
	static := func(path, file, ctype string) {
		mux.Handle("GET "+path, h.wrap(path, false, func(w http.ResponseWriter, _ *http.Request) error {
			b, err := adminWeb.ReadFile("admin_web/" + file)
			if err != nil {
				return err
			}
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(b)
			return nil
		}))
	}
	static("/admin/{$}", "index.html", "text/html; charset=utf-8")
	static("/admin/admin.js", "admin.js", "text/javascript; charset=utf-8")
	static("/admin/admin.css", "admin.css", "text/css; charset=utf-8")
	mux.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusFound))
	mux.Handle("GET /favicon.ico", h.wrap("/favicon.ico", false, func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusNoContent) // no icon; keeps browsers from logging a 404
		return nil
	}))
	mux.Handle("/", h.wrap("not_found", false, func(http.ResponseWriter, *http.Request) error {
		return adminErr(http.StatusNotFound, "not found: the admin page is at /admin/, the API under /admin/api/")
	}))
	return mux
}

type adminHandler struct {
	a          *Admin
	token      string
	tokenHash  []byte
	auditStore audit.Store
	auditKeys  *audit.Keys
	publicURL  string
	// verifyTimeout bounds POST /admin/api/audit/verify.
	verifyTimeout time.Duration
	log           *slog.Logger
}

// adminError is an answer with a status and an error text.
type adminError struct {
	status int
	msg    string
}

func (e *adminError) Error() string { return e.msg }

func adminErr(status int, format string, args ...any) *adminError {
	return &adminError{status: status, msg: fmt.Sprintf(format, args...)}
}

// wrap adds security headers, the bearer check (auth), the same-origin
// check of POSTs, error answers and the access log.
func (h *adminHandler) wrap(route string, auth bool, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		hd := sw.Header()
		hd.Set("Content-Security-Policy", adminCSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		err := h.check(r, auth)
		if err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), adminCallTimeout)
			err = fn(sw, r.WithContext(ctx))
			cancel()
		}
		if err != nil {
			var ae *adminError
			if !errors.As(err, &ae) {
				h.log.Error("admin request failed", "route", route, "method", r.Method, "err", err)
				ae = adminErr(http.StatusServiceUnavailable, "store unavailable: the broker's state or inbox store did not answer")
			}
			if ae.status == http.StatusUnauthorized {
				hd.Set("WWW-Authenticate", `Bearer realm="sealrelay-admin"`)
			}
			writeError(sw, ae.status, ae.msg)
		}
		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		h.log.Info("admin request", "route", route, "method", r.Method, "status", code, "duration", time.Since(start))
	})
}

func (h *adminHandler) check(r *http.Request, auth bool) error {
	if r.Method == http.MethodPost {
		// A browser sends Origin on every cross-origin POST; the page's own
		// POSTs are same-origin. (The bearer header is the real CSRF
		// defence: another site's page cannot set it.)
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				return adminErr(http.StatusForbidden, "cross-origin request refused: Origin %q is not this admin listener", truncateForError(o))
			}
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			return adminErr(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	if !auth || h.tokenHash == nil {
		return nil
	}
	tok := bearerToken(r)
	if tok == "" {
		return adminErr(http.StatusUnauthorized, "missing admin token: send Authorization: Bearer <contents of --admin-token-file>")
	}
	if !crypto.Equal(crypto.SHA256([]byte(tok)), h.tokenHash) {
		return adminErr(http.StatusUnauthorized, "invalid admin token")
	}
	return nil
}

// mapAdminError turns Admin errors into answers: unknown agent 404, bad
// argument 400; anything else is a store failure (logged, 503).
func mapAdminError(err error, agentID string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, state.ErrNotFound):
		return adminErr(http.StatusNotFound, "unknown agent %s", agentID)
	case errors.Is(err, ErrInvalidAdminArgument):
		return adminErr(http.StatusBadRequest, "%s", err.Error())
	}
	return err
}

func pathAgent(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := ValidateAgentID(id); err != nil {
		return "", adminErr(http.StatusBadRequest, "%s", err.Error())
	}
	return id, nil
}

// adminConfirm is the body of every admin POST: confirm must repeat the
// agent id of the path, so that a request cannot act on an agent by
// accident (a replayed or mistyped URL).
type adminConfirm struct {
	Confirm string   `json:"confirm"`
	IDs     []string `json:"ids,omitempty"`
}

func readConfirm(w http.ResponseWriter, r *http.Request, agentID string, allowIDs bool) (*adminConfirm, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, adminErr(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxAdminBody)
		}
		return nil, adminErr(http.StatusBadRequest, "could not read request body")
	}
	var c adminConfirm
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, adminErr(http.StatusBadRequest, "invalid JSON body: %s (want {\"confirm\": \"<agent id>\"})", jsonBodyError(err))
	}
	if c.Confirm == "" {
		return nil, adminErr(http.StatusBadRequest, "missing confirm: repeat the agent id in {\"confirm\": %q}", agentID)
	}
	if c.Confirm != agentID {
		return nil, adminErr(http.StatusBadRequest, "confirm does not match the agent id %s", agentID)
	}
	if len(c.IDs) > 0 && !allowIDs {
		return nil, adminErr(http.StatusBadRequest, "ids is not an argument of this action")
	}
	return &c, nil
}

func jsonBodyError(err error) string {
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("%s has the wrong type", ute.Field)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	if msg := err.Error(); len(msg) < 80 && bytes.HasPrefix([]byte(msg), []byte("json: unknown field")) {
		return msg[len("json: "):]
	}
	return "malformed"
}

func (h *adminHandler) installations(w http.ResponseWriter, r *http.Request) error {
	list, err := h.a.Installations(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "installations": list})
	return nil
}

func (h *adminHandler) agents(w http.ResponseWriter, r *http.Request) error {
	org := r.URL.Query().Get("org")
	if org != "" {
		if _, err := protocol.ResolveOrgID(org, ""); err != nil {
			return adminErr(http.StatusBadRequest, "invalid org: %v", err)
		}
	}
	list, err := h.a.Agents(r.Context(), org)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "idle_after_seconds": int64(h.a.IdleAfter() / time.Second), "agents": list})
	return nil
}

func (h *adminHandler) agent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	v, err := h.a.Agent(r.Context(), id)
	if err != nil {
		return mapAdminError(err, id)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "agent": v})
	return nil
}

func (h *adminHandler) revoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	if _, err := readConfirm(w, r, id, false); err != nil {
		return err
	}
	res, err := h.a.Revoke(r.Context(), id)
	if err != nil && res.AgentID == "" {
		return mapAdminError(err, id)
	}
	if err != nil { // revoked; only the cleanup failed
		h.log.Warn("revoked agent's cleanup failed; retention removes the rest", "agent_id", id, "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "revoked": res})
	return nil
}

func (h *adminHandler) deadLetters(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxDeadLetterListLimit {
			return adminErr(http.StatusBadRequest, "invalid limit: want 1 to %d", MaxDeadLetterListLimit)
		}
	}
	list, err := h.a.DeadLetters(r.Context(), id, limit)
	if err != nil {
		return mapAdminError(err, id)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "agent_id": id, "dead_letters": list})
	return nil
}

func (h *adminHandler) redrive(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	c, err := readConfirm(w, r, id, true)
	if err != nil {
		return err
	}
	n, err := h.a.Redrive(r.Context(), id, c.IDs)
	if err != nil {
		return mapAdminError(err, id)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "agent_id": id, "redriven": n})
	return nil
}

func (h *adminHandler) purge(w http.ResponseWriter, r *http.Request) error {
	id, err := pathAgent(r)
	if err != nil {
		return err
	}
	if _, err := readConfirm(w, r, id, false); err != nil {
		return err
	}
	n, err := h.a.Purge(r.Context(), id)
	if err != nil {
		return mapAdminError(err, id)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "agent_id": id, "purged": n})
	return nil
}

func (h *adminHandler) auditTail(w http.ResponseWriter, r *http.Request) error {
	n := DefaultAuditTail
	if s := r.URL.Query().Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > MaxAuditTail {
			return adminErr(http.StatusBadRequest, "invalid n: want 1 to %d", MaxAuditTail)
		}
	}
	if h.auditStore == nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "enabled": false, "records": []AuditRow{}})
		return nil
	}
	rows, err := auditRows(r.Context(), h.auditStore, n)
	if err != nil {
		return fmt.Errorf("audit tail: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "enabled": true, "records": rows})
	return nil
}

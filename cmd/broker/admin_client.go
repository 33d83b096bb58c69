package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/internal/settings"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// adminBackend is what `broker agents` and `broker dlq` run against: the
// admin listener of a running broker (httpAdmin) or, with --redis-url, the
// Redis store directly (directAdmin around broker.Admin).
type adminBackend interface {
	Installations(ctx context.Context) ([]broker.InstallationView, error)
	Agents(ctx context.Context, org string) ([]broker.AgentView, error)
	Revoke(ctx context.Context, id string) (broker.RevokeResult, error)
	DeadLetters(ctx context.Context, agentID string, limit int) ([]broker.DeadLetterView, error)
	Redrive(ctx context.Context, agentID string, ids []string) (int, error)
	Purge(ctx context.Context, agentID string) (int, error)
	MintToken(ctx context.Context, org string, mode state.RegistrationMode) (broker.MintedToken, error)
	Close() error
}

// errUnknownAgent is returned (wrapped, naming the agent) by both backends.
var errUnknownAgent = errors.New("unknown agent")

// adminFlags are the connection flags shared by the admin commands.
type adminFlags struct {
	url, tokenFile, redisURL, redisPrefix string
	idleAfter                             string
}

const defaultAdminURL = "http://" + defaultAdminListen

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "admin-url", defaultAdminURL, "admin listener of the running broker: http://HOST:PORT or unix:/path/to/socket")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin token (default: $SEALRELAY_ADMIN_TOKEN_FILE)")
	fs.StringVar(&f.redisURL, "redis-url", "", "open this Redis store directly instead of asking the admin listener")
	fs.StringVar(&f.redisPrefix, "redis-prefix", defaultRedisPrefix, "key prefix of the broker's Redis store (with --redis-url)")
	fs.StringVar(&f.idleAfter, "agent-idle-after", defaultAgentIdleAfter, "idle threshold (with --redis-url; the listener uses the broker's)")
}

// open connects the backend the flags name.
func (f *adminFlags) open(ctx context.Context, getenv func(string) string) (adminBackend, error) {
	if f.redisURL != "" {
		return openDirectAdmin(ctx, f)
	}
	return dialAdmin(f.url, f.tokenFile, getenv)
}

// dialAdmin returns a client of the admin listener at rawURL with the token
// read from tokenFile (empty: $SEALRELAY_ADMIN_TOKEN_FILE).
func dialAdmin(rawURL, tokenFile string, getenv func(string) string) (*httpAdmin, error) {
	path := tokenFile
	if path == "" {
		path = getenv("SEALRELAY_ADMIN_TOKEN_FILE")
	}
	if path == "" {
		return nil, usageError{"no admin token: pass --admin-token-file FILE (the file given to `broker serve --admin-token-file`), or --redis-url to open a Redis store directly"}
	}
	tok, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin token file %s: %w", path, err)
	}
	if tok == "" {
		return nil, fmt.Errorf("admin token file %s is empty", path)
	}
	return newHTTPAdmin(rawURL, tok)
}

// --- direct (Redis) ----------------------------------------------------------

type directAdmin struct {
	*broker.Admin
	close func()
}

func (d *directAdmin) Close() error { d.close(); return nil }

func (d *directAdmin) Revoke(ctx context.Context, id string) (broker.RevokeResult, error) {
	res, err := d.Admin.Revoke(ctx, id)
	return res, directErr(err, id)
}
func (d *directAdmin) DeadLetters(ctx context.Context, id string, limit int) ([]broker.DeadLetterView, error) {
	l, err := d.Admin.DeadLetters(ctx, id, limit)
	return l, directErr(err, id)
}
func (d *directAdmin) Redrive(ctx context.Context, id string, ids []string) (int, error) {
	n, err := d.Admin.Redrive(ctx, id, ids)
	return n, directErr(err, id)
}
func (d *directAdmin) Purge(ctx context.Context, id string) (int, error) {
	n, err := d.Admin.Purge(ctx, id)
	return n, directErr(err, id)
}

func (d *directAdmin) MintToken(ctx context.Context, org string, mode state.RegistrationMode) (broker.MintedToken, error) {
	t, err := d.Admin.MintToken(ctx, org, mode)
	if errors.Is(err, broker.ErrMintUnavailable) {
		return t, usageError{"`broker agents token` needs the running broker's admin listener (--admin-url, --admin-token-file): only the broker holds the key that hashes registration tokens"}
	}
	return t, err
}

func directErr(err error, id string) error {
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("%w %s", errUnknownAgent, id)
	}
	return err
}

func openDirectAdmin(ctx context.Context, f *adminFlags) (adminBackend, error) {
	opts, err := redis.ParseURL(f.redisURL)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--redis-url is not a Redis URL (%v)", redactURLError(err, f.redisURL))}
	}
	if f.redisPrefix == "" || strings.ContainsAny(f.redisPrefix, " \t\r\n{}") {
		return nil, usageError{"--redis-prefix is not a usable key prefix"}
	}
	idle, err := settings.ParseDays(f.idleAfter)
	if err != nil || idle < time.Minute {
		return nil, usageError{"--agent-idle-after is not a duration of at least 1m (e.g. 24h, 7d)"}
	}
	rdb, _, err := newRedisClient(ctx, &config{RedisOptions: opts})
	if err != nil {
		return nil, err
	}
	rs, err := redisstore.Open(rdb, f.redisPrefix, redisstore.InboxOptions{})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	adm, err := broker.NewAdmin(rs, rs.Inbox, broker.AdminOptions{IdleAfter: idle})
	if err != nil {
		_ = rs.Close()
		_ = rdb.Close()
		return nil, err
	}
	return &directAdmin{Admin: adm, close: func() { _ = rs.Close(); _ = rdb.Close() }}, nil
}

// --- HTTP (admin listener) ---------------------------------------------------

type httpAdmin struct {
	base    string // http://host:port or http://admin (unix)
	display string // the --admin-url as given, for errors
	token   string
	c       *http.Client
}

func newHTTPAdmin(raw, token string) (*httpAdmin, error) {
	h := &httpAdmin{display: raw, token: token}
	tr := &http.Transport{Proxy: nil, MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	if network, path := parseAdminAddr(raw); network == "unix" {
		if path == "" {
			return nil, usageError{"--admin-url unix: needs a socket path, e.g. unix:/run/sealrelay/admin.sock"}
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		h.base = "http://admin"
	} else {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, usageError{fmt.Sprintf("--admin-url %q is not http://HOST:PORT, https://HOST:PORT or unix:/path", raw)}
		}
		h.base = strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/")
	}
	h.c = &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return h, nil
}

func (h *httpAdmin) Close() error { h.c.CloseIdleConnections(); return nil }

// call sends one admin request and decodes the answer into out; agentID,
// when set, names the agent in a 404.
func (h *httpAdmin) call(ctx context.Context, method, path string, body any, agentID string, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+"/admin/api/"+path, rd)
	if err != nil {
		return fmt.Errorf("admin request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return fmt.Errorf("admin listener not reachable at %s (is `broker serve` running with --admin-listen and an admin token? for a Redis store you can pass --redis-url instead): %w", h.display, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read admin answer from %s: %w", h.display, err)
	}
	var e struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return fmt.Errorf("admin listener at %s answered %d with a body that is not JSON (is --admin-url the admin listener?)", h.display, resp.StatusCode)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("admin listener at %s refused the token (401 %s): check --admin-token-file against the broker's", h.display, e.Error)
	case resp.StatusCode == http.StatusNotFound && e.Error == broker.ErrAuditOff:
		return fmt.Errorf("%w: the broker at %s has no audit store to read", errAuditOff, h.display)
	case resp.StatusCode == http.StatusNotFound && agentID != "" && strings.HasPrefix(e.Error, "unknown agent"):
		return fmt.Errorf("%w %s", errUnknownAgent, agentID)
	case resp.StatusCode != http.StatusOK || !e.OK:
		return fmt.Errorf("admin listener at %s: %d %s", h.display, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode admin answer: %w", err)
	}
	return nil
}

func (h *httpAdmin) MintToken(ctx context.Context, org string, mode state.RegistrationMode) (broker.MintedToken, error) {
	var out struct {
		Token broker.MintedToken `json:"registration_token"`
	}
	err := h.call(ctx, "POST", "orgs/"+url.PathEscape(org)+"/registration-tokens", map[string]any{"mode": string(mode), "confirm": org}, "", &out)
	return out.Token, err
}

func agentPath(id string, rest string) string { return "agents/" + url.PathEscape(id) + rest }

func (h *httpAdmin) Installations(ctx context.Context) ([]broker.InstallationView, error) {
	var out struct {
		Installations []broker.InstallationView `json:"installations"`
	}
	err := h.call(ctx, "GET", "installations", nil, "", &out)
	return out.Installations, err
}

func (h *httpAdmin) Agents(ctx context.Context, org string) ([]broker.AgentView, error) {
	path := "agents"
	if org != "" {
		path += "?org=" + url.QueryEscape(org)
	}
	var out struct {
		Agents []broker.AgentView `json:"agents"`
	}
	err := h.call(ctx, "GET", path, nil, "", &out)
	return out.Agents, err
}

func (h *httpAdmin) Revoke(ctx context.Context, id string) (broker.RevokeResult, error) {
	var out struct {
		Revoked broker.RevokeResult `json:"revoked"`
	}
	err := h.call(ctx, "POST", agentPath(id, "/revoke"), map[string]any{"confirm": id}, id, &out)
	return out.Revoked, err
}

func (h *httpAdmin) DeadLetters(ctx context.Context, id string, limit int) ([]broker.DeadLetterView, error) {
	path := agentPath(id, "/dead-letters")
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out struct {
		DeadLetters []broker.DeadLetterView `json:"dead_letters"`
	}
	err := h.call(ctx, "GET", path, nil, id, &out)
	return out.DeadLetters, err
}

func (h *httpAdmin) Redrive(ctx context.Context, id string, ids []string) (int, error) {
	var out struct {
		Redriven int `json:"redriven"`
	}
	body := map[string]any{"confirm": id}
	if len(ids) > 0 {
		body["ids"] = ids
	}
	err := h.call(ctx, "POST", agentPath(id, "/dead-letters/redrive"), body, id, &out)
	return out.Redriven, err
}

func (h *httpAdmin) Purge(ctx context.Context, id string) (int, error) {
	var out struct {
		Purged int `json:"purged"`
	}
	err := h.call(ctx, "POST", agentPath(id, "/dead-letters/purge"), map[string]any{"confirm": id}, id, &out)
	return out.Purged, err
}

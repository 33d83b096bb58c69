// Package slackfake is an in-memory fake of the parts of the Slack Web API
// and OAuth flow that sealrelay uses, for tests, the end-to-end suite and
// the sandbox. It is served with net/http/httptest:
//
//	fake := slackfake.New(slackfake.Options{ClientID: "cid", ClientSecret: "cs"})
//	srv := httptest.NewServer(fake)
//	api := slack.New(token, slack.OptionAPIURL(srv.URL+"/api/"))
//
// Endpoints: GET /oauth/v2/authorize (simulated consent: redirects to
// redirect_uri with a code and the state), POST /api/oauth.v2.access
// (authorization codes, enterprise installs, token rotation with
// grant_type=refresh_token), and the Web API methods listed in methods.go
// (auth.test, chat.*, reactions.add, conversations.history/replies/info,
// views.open/update/push, assistant.threads.*, users.info and the external
// file upload flow with its POST /upload/<file id> endpoint). Any other
// /api/<method> answers {"ok":false,"error":"unknown_method"}. Every method
// takes form or JSON bodies, with the token as an Authorization bearer or a
// form field. Errors, 429s and 5xx can be scripted per method; every call
// (method, parameters, token, content type) is recorded for assertions. All
// methods are safe for concurrent use.
package slackfake

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Fake.
type Options struct {
	// ClientID and ClientSecret are the app credentials oauth.v2.access
	// accepts. Empty means "accept any".
	ClientID     string
	ClientSecret string
	// DefaultInstall is what the authorize endpoint installs when no install
	// was queued with QueueInstall. Zero fields get defaults.
	DefaultInstall Install
}

// Install describes the workspace (or enterprise org) an authorization code
// installs into, and the tokens oauth.v2.access hands out for it.
type Install struct {
	TeamID              string
	TeamName            string
	EnterpriseID        string
	EnterpriseName      string
	IsEnterpriseInstall bool
	AppID               string
	BotUserID           string
	BotID               string
	Scope               string
	AuthedUserID        string
	// BotToken is the token to issue; generated ("xoxb-...") when empty.
	BotToken string
	// Rotating makes oauth.v2.access return a refresh token and expires_in
	// (token rotation enabled), and accept grant_type=refresh_token.
	Rotating bool
	// ExpiresIn is the bot token lifetime in seconds with rotation
	// (default 43200).
	ExpiresIn int
	// DenyConsent makes the authorize endpoint redirect with
	// error=access_denied instead of a code.
	DenyConsent bool
}

// Reply is a scripted answer for the next call of a method.
type Reply struct {
	// Error, when set, is returned as {"ok":false,"error":Error}.
	Error string
	// Status, when set, is the HTTP status (429 for rate limits, 5xx ...).
	Status int
	// RetryAfter is sent as the Retry-After header (seconds) with Status 429.
	RetryAfter int
}

// Call is one recorded API call.
type Call struct {
	// Method is the Web API method ("chat.postMessage"), "authorize", or
	// "upload" for a POST to an upload URL (Params then holds file_id).
	Method string
	// Token is the bearer or form token the call carried.
	Token string
	// Params holds the form fields (or the top-level JSON fields,
	// stringified), without the token.
	Params url.Values
	// ContentType is the media type of the request body
	// ("application/x-www-form-urlencoded", "application/json", ...).
	ContentType string
	// JSON is the raw request body when it was JSON, else nil.
	JSON []byte
	// Status is the HTTP status the fake answered.
	Status int
	// Error is the Slack error code answered, "" on success.
	Error string
	// Time is when the call arrived.
	Time time.Time
}

// Message is a message the fake holds (posted, then maybe updated).
type Message struct {
	Channel   string
	TS        string
	ThreadTS  string
	Text      string
	Blocks    string
	Reactions []string
	// User and BotID identify the poster (the token's bot user).
	User  string
	BotID string
	// Streaming is true between chat.startStream and chat.stopStream.
	Streaming bool
}

type tokenInfo struct {
	inst    Install
	revoked bool
	expires time.Time
}

type codeInfo struct {
	inst        Install
	redirectURI string
}

// Fake is the fake Slack. It is an http.Handler.
type Fake struct {
	opts  Options
	mux   *http.ServeMux
	known map[string]method

	mu       sync.Mutex
	calls    []Call
	scripts  map[string][]Reply
	codes    map[string]codeInfo
	tokens   map[string]*tokenInfo
	refresh  map[string]Install
	queued   []Install
	messages map[string]*Message // channel + "/" + ts
	uploads  map[string]*Upload  // file id
	views    map[string]string   // view id → view JSON
	seq      int64
	now      func() time.Time
}

// New returns a Fake.
func New(opts Options) *Fake {
	f := &Fake{
		opts:     opts,
		mux:      http.NewServeMux(),
		scripts:  map[string][]Reply{},
		codes:    map[string]codeInfo{},
		tokens:   map[string]*tokenInfo{},
		refresh:  map[string]Install{},
		messages: map[string]*Message{},
		uploads:  map[string]*Upload{},
		views:    map[string]string{},
		now:      time.Now,
	}
	f.mux.HandleFunc("GET /oauth/v2/authorize", f.authorize)
	f.known = f.methods()
	f.mux.HandleFunc("/api/{method}", f.dispatch)
	f.mux.HandleFunc("POST /upload/{id}", f.upload)
	return f
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// APIURL returns the Web API base URL for a fake served at serverURL, in the
// form slack.OptionAPIURL expects (with a trailing slash).
func APIURL(serverURL string) string { return strings.TrimRight(serverURL, "/") + "/api/" }

// AuthorizeURL returns the authorize endpoint URL for a fake served at
// serverURL.
func AuthorizeURL(serverURL string) string {
	return strings.TrimRight(serverURL, "/") + "/oauth/v2/authorize"
}

// Script queues replies for the next calls of method, in order. A call with
// no scripted reply behaves normally.
func (f *Fake) Script(method string, replies ...Reply) {
	f.mu.Lock()
	f.scripts[method] = append(f.scripts[method], replies...)
	f.mu.Unlock()
}

// QueueInstall makes the next authorize request install inst (instead of
// Options.DefaultInstall).
func (f *Fake) QueueInstall(inst Install) {
	f.mu.Lock()
	f.queued = append(f.queued, inst)
	f.mu.Unlock()
}

// IssueCode returns an authorization code for inst, as if the admin had
// consented, bound to redirectURI ("" = any).
func (f *Fake) IssueCode(inst Install, redirectURI string) string {
	code := "code-" + randHex(12)
	f.mu.Lock()
	f.codes[code] = codeInfo{inst: withDefaults(inst), redirectURI: redirectURI}
	f.mu.Unlock()
	return code
}

// AddToken makes token valid for inst without an OAuth flow.
func (f *Fake) AddToken(token string, inst Install) {
	f.mu.Lock()
	f.tokens[token] = &tokenInfo{inst: withDefaults(inst)}
	f.mu.Unlock()
}

// RevokeToken makes every later call with token fail with token_revoked.
func (f *Fake) RevokeToken(token string) {
	f.mu.Lock()
	if ti := f.tokens[token]; ti != nil {
		ti.revoked = true
	}
	f.mu.Unlock()
}

// Calls returns a copy of every recorded call, in arrival order.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Call, len(f.calls))
	copy(out, f.calls)
	return out
}

// CallsTo returns the recorded calls of one method.
func (f *Fake) CallsTo(method string) []Call {
	var out []Call
	for _, c := range f.Calls() {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns a copy of every message the fake holds, in post order.
func (f *Fake) Messages() []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Message, 0, len(f.messages))
	for _, m := range f.messages {
		c := *m
		c.Reactions = append([]string(nil), m.Reactions...)
		out = append(out, c)
	}
	// ts values are increasing sequence numbers: sort by them.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].TS < out[j-1].TS; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func withDefaults(in Install) Install {
	if in.TeamID == "" {
		in.TeamID = "T0FAKE001"
	}
	if in.TeamName == "" {
		in.TeamName = "Fake Team"
	}
	if in.AppID == "" {
		in.AppID = "A0FAKE001"
	}
	if in.BotUserID == "" {
		in.BotUserID = "U0FAKEBOT"
	}
	if in.BotID == "" {
		in.BotID = "B0FAKEBOT"
	}
	if in.Scope == "" {
		in.Scope = "chat:write,reactions:write,app_mentions:read"
	}
	if in.AuthedUserID == "" {
		in.AuthedUserID = "U0FAKEADM"
	}
	if in.Rotating && in.ExpiresIn == 0 {
		in.ExpiresIn = 43200
	}
	return in
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// authorize simulates the Slack consent screen: it redirects to the
// redirect_uri with a fresh code and the caller's state.
func (f *Fake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect := q.Get("redirect_uri")
	state := q.Get("state")
	f.mu.Lock()
	inst := f.opts.DefaultInstall
	if len(f.queued) > 0 {
		inst = f.queued[0]
		f.queued = f.queued[1:]
	}
	f.mu.Unlock()
	params := url.Values{}
	for k, v := range q {
		params[k] = v
	}
	record := func(status int, errCode string) {
		f.record(Call{Method: "authorize", Params: params, Status: status, Error: errCode})
	}
	if f.opts.ClientID != "" && q.Get("client_id") != f.opts.ClientID {
		record(http.StatusBadRequest, "invalid_client_id")
		http.Error(w, "invalid_client_id", http.StatusBadRequest)
		return
	}
	u, err := url.Parse(redirect)
	if err != nil || redirect == "" || (u.Scheme != "http" && u.Scheme != "https") {
		record(http.StatusBadRequest, "bad_redirect_uri")
		http.Error(w, "bad_redirect_uri", http.StatusBadRequest)
		return
	}
	back := u.Query()
	if inst.DenyConsent {
		back.Set("error", "access_denied")
	} else {
		back.Set("code", f.IssueCode(inst, redirect))
	}
	back.Set("state", state)
	u.RawQuery = back.Encode()
	record(http.StatusFound, back.Get("error"))
	http.Redirect(w, r, u.String(), http.StatusFound)
}

type apiFunc func(tok string, p url.Values) (map[string]any, string)

// apiFuncR is an apiFunc that also sees the request (for its host).
type apiFuncR func(r *http.Request, tok string, p url.Values) (map[string]any, string)

// apiR wraps a Web API method: parse the request, apply scripts, check the
// token when needed, record the call and write the answer.
func (f *Fake) apiR(method string, needToken bool, fn apiFuncR) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		params, tok, raw, err := parseParams(r)
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		c := Call{Method: method, Token: tok, Params: params, ContentType: ct, JSON: raw}
		if err != nil {
			c.Status, c.Error = http.StatusBadRequest, "invalid_form_data"
			f.record(c)
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_form_data"})
			return
		}
		f.mu.Lock()
		var scripted *Reply
		if q := f.scripts[method]; len(q) > 0 {
			scripted = &q[0]
			f.scripts[method] = q[1:]
		}
		f.mu.Unlock()
		if scripted != nil {
			status := scripted.Status
			if status == 0 {
				status = http.StatusOK
			}
			c.Status, c.Error = status, scripted.Error
			if status == http.StatusTooManyRequests {
				if c.Error == "" {
					c.Error = "ratelimited"
				}
				ra := scripted.RetryAfter
				if ra <= 0 {
					ra = 1
				}
				w.Header().Set("Retry-After", strconv.Itoa(ra))
			}
			f.record(c)
			if status != http.StatusOK && status != http.StatusTooManyRequests {
				http.Error(w, http.StatusText(status), status)
				return
			}
			writeJSON(w, status, map[string]any{"ok": false, "error": c.Error})
			return
		}
		if needToken {
			if code := f.checkToken(tok); code != "" {
				c.Status, c.Error = http.StatusOK, code
				f.record(c)
				writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": code})
				return
			}
		}
		out, code := fn(r, tok, params)
		c.Status, c.Error = http.StatusOK, code
		f.record(c)
		if code != "" {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": code})
			return
		}
		out["ok"] = true
		writeJSON(w, http.StatusOK, out)
	}
}

func (f *Fake) record(c Call) {
	c.Time = time.Now()
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *Fake) checkToken(tok string) string {
	if tok == "" {
		return "not_authed"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ti := f.tokens[tok]
	switch {
	case ti == nil:
		return "invalid_auth"
	case ti.revoked:
		return "token_revoked"
	case !ti.expires.IsZero() && f.now().After(ti.expires):
		return "token_expired"
	}
	return ""
}

func (f *Fake) instFor(tok string) Install {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ti := f.tokens[tok]; ti != nil {
		return ti.inst
	}
	return Install{}
}

// parseParams reads form, multipart or JSON parameters (plus the query
// string) and the token (Authorization bearer header, else the "token"
// field). raw is the body when it was JSON.
func parseParams(r *http.Request) (params url.Values, tok string, raw []byte, err error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		if err := r.ParseMultipartForm(4 << 20); err != nil {
			return nil, "", nil, err
		}
		params = url.Values{}
		for k, v := range r.MultipartForm.Value {
			params[k] = v
		}
		return finishParams(r, params, nil)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return nil, "", nil, err
	}
	params = url.Values{}
	if ct == "application/json" {
		var m map[string]any
		if len(body) > 0 {
			if err := json.Unmarshal(body, &m); err != nil {
				return nil, "", nil, err
			}
		}
		raw = body
		for k, v := range m {
			if s, ok := v.(string); ok {
				params.Set(k, s)
				continue
			}
			b, _ := json.Marshal(v)
			params.Set(k, string(b))
		}
	} else {
		params, err = url.ParseQuery(string(body))
		if err != nil {
			return nil, "", nil, err
		}
	}
	return finishParams(r, params, raw)
}

func finishParams(r *http.Request, params url.Values, raw []byte) (url.Values, string, []byte, error) {
	for k, v := range r.URL.Query() {
		if _, ok := params[k]; !ok {
			params[k] = v
		}
	}
	tok := params.Get("token")
	params.Del("token")
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		tok = strings.TrimPrefix(h, "Bearer ")
	}
	if tok == "" {
		if u, p, ok := r.BasicAuth(); ok {
			// oauth.v2.access accepts client credentials as basic auth.
			if params.Get("client_id") == "" {
				params.Set("client_id", u)
			}
			if params.Get("client_secret") == "" {
				params.Set("client_secret", p)
			}
		}
	}
	return params, tok, raw, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *Fake) oauthAccess(_ string, p url.Values) (map[string]any, string) {
	if f.opts.ClientID != "" && p.Get("client_id") != f.opts.ClientID {
		return nil, "invalid_client_id"
	}
	if f.opts.ClientSecret != "" && !hmac.Equal([]byte(p.Get("client_secret")), []byte(f.opts.ClientSecret)) {
		return nil, "bad_client_secret"
	}
	var inst Install
	if p.Get("grant_type") == "refresh_token" {
		rt := p.Get("refresh_token")
		f.mu.Lock()
		in, ok := f.refresh[rt]
		delete(f.refresh, rt) // refresh tokens are single use
		f.mu.Unlock()
		if !ok {
			return nil, "invalid_refresh_token"
		}
		inst = in
		inst.BotToken = "" // rotation issues a new token
	} else {
		code := p.Get("code")
		f.mu.Lock()
		ci, ok := f.codes[code]
		delete(f.codes, code) // codes are single use
		f.mu.Unlock()
		if !ok {
			return nil, "invalid_code"
		}
		if ci.redirectURI != "" && p.Get("redirect_uri") != ci.redirectURI {
			return nil, "bad_redirect_uri"
		}
		inst = ci.inst
	}
	tok := inst.BotToken
	if tok == "" {
		if inst.Rotating {
			tok = "xoxe.xoxb-1-" + randHex(16)
		} else {
			tok = "xoxb-" + randHex(16)
		}
	}
	out := map[string]any{
		"access_token": tok,
		"token_type":   "bot",
		"scope":        inst.Scope,
		"bot_user_id":  inst.BotUserID,
		"app_id":       inst.AppID,
		"team":         map[string]any{"id": inst.TeamID, "name": inst.TeamName},
		"enterprise":   nil,
		"authed_user":  map[string]any{"id": inst.AuthedUserID},
	}
	if inst.IsEnterpriseInstall {
		out["team"] = nil
	}
	if inst.EnterpriseID != "" {
		out["enterprise"] = map[string]any{"id": inst.EnterpriseID, "name": inst.EnterpriseName}
	}
	out["is_enterprise_install"] = inst.IsEnterpriseInstall
	ti := &tokenInfo{inst: inst}
	f.mu.Lock()
	if inst.Rotating {
		rt := "xoxe-1-" + randHex(16)
		f.refresh[rt] = inst
		out["refresh_token"] = rt
		out["expires_in"] = inst.ExpiresIn
		ti.expires = f.now().Add(time.Duration(inst.ExpiresIn) * time.Second)
	}
	f.tokens[tok] = ti
	f.mu.Unlock()
	return out, ""
}

func (f *Fake) authTest(tok string, _ url.Values) (map[string]any, string) {
	inst := f.instFor(tok)
	out := map[string]any{
		"url":                   "https://fake.slack.test/",
		"team":                  inst.TeamName,
		"user":                  "sealrelay",
		"team_id":               inst.TeamID,
		"user_id":               inst.BotUserID,
		"bot_id":                inst.BotID,
		"is_enterprise_install": inst.IsEnterpriseInstall,
	}
	if inst.EnterpriseID != "" {
		out["enterprise_id"] = inst.EnterpriseID
	}
	return out, ""
}

func (f *Fake) nextTS() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return fmt.Sprintf("1700000000.%06d", f.seq)
}

func (f *Fake) postMessage(tok string, p url.Values) (map[string]any, string) {
	ch := p.Get("channel")
	if ch == "" {
		return nil, "channel_not_found"
	}
	if p.Get("text") == "" && p.Get("blocks") == "" && p.Get("attachments") == "" {
		return nil, "no_text"
	}
	ts := f.nextTS()
	inst := f.instFor(tok)
	m := &Message{Channel: ch, TS: ts, ThreadTS: p.Get("thread_ts"), Text: p.Get("text"), Blocks: p.Get("blocks"),
		User: inst.BotUserID, BotID: inst.BotID}
	f.mu.Lock()
	f.messages[ch+"/"+ts] = m
	f.mu.Unlock()
	return map[string]any{"channel": ch, "ts": ts, "message": messageJSON(m)}, ""
}

func (f *Fake) update(_ string, p url.Values) (map[string]any, string) {
	ch, ts := p.Get("channel"), p.Get("ts")
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.messages[ch+"/"+ts]
	if m == nil {
		return nil, "message_not_found"
	}
	m.Text = p.Get("text")
	if b := p.Get("blocks"); b != "" {
		m.Blocks = b
	}
	return map[string]any{"channel": ch, "ts": ts, "text": m.Text}, ""
}

func (f *Fake) reactionsAdd(_ string, p url.Values) (map[string]any, string) {
	ch, ts, name := p.Get("channel"), p.Get("timestamp"), p.Get("name")
	if name == "" {
		return nil, "invalid_name"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.messages[ch+"/"+ts]
	if m == nil {
		return nil, "message_not_found"
	}
	for _, r := range m.Reactions {
		if r == name {
			return nil, "already_reacted"
		}
	}
	m.Reactions = append(m.Reactions, name)
	return map[string]any{}, ""
}

// Signature returns the X-Slack-Signature value Slack sends for body at
// timestamp ts: "v0=" + hex(HMAC-SHA256(signingSecret, "v0:<ts>:<body>")).
func Signature(signingSecret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(signingSecret))
	fmt.Fprintf(m, "v0:%d:", ts)
	m.Write(body)
	return "v0=" + hex.EncodeToString(m.Sum(nil))
}

// SignRequest sets X-Slack-Request-Timestamp and X-Slack-Signature on r for
// body, exactly as Slack does.
func SignRequest(r *http.Request, signingSecret string, ts time.Time, body []byte) {
	r.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("X-Slack-Signature", Signature(signingSecret, ts.Unix(), body))
}

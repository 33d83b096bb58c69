package broker

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/sealrelay/sealrelay/state"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

const testAdminToken = "admin-token-0123456789abcdef0123456789"

// failingAuditReads is an audit store whose reads fail while fail is set.
type failingAuditReads struct {
	audit.Store
	fail atomic.Bool
}

func (f *failingAuditReads) Chains(ctx context.Context) ([]string, error) {
	if f.fail.Load() {
		return nil, errors.New("disk on fire")
	}
	return f.Store.Chains(ctx)
}

// auditLogOf writes n revoke records of agent ag-1 to a fresh MemStore.
func auditLogOf(t *testing.T, n int) *failingAuditReads {
	t.Helper()
	st := &failingAuditReads{Store: audit.NewMemStore()}
	keys, err := audit.DeriveKeys(newTestKeys(t).Signing)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(st, keys, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	for range n {
		if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindRevoke, Agent: "ag-1", Org: "T1", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

type adminHTTP struct {
	url  string
	env  adminEnv
	logs *syncBuffer
}

func newAdminHTTP(t *testing.T, aud audit.Store) *adminHTTP {
	t.Helper()
	e := adminEngines[1].open(t, queue.Options{Lease: 50 * time.Millisecond, MaxDeliveries: 1})
	adm, err := NewAdmin(e.st, e.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := AdminHandlerOptions{Token: testAdminToken, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	if aud != nil {
		opts.AuditStore = aud
	}
	srv := httptest.NewServer(NewAdminHandler(adm, opts))
	t.Cleanup(srv.Close)
	return &adminHTTP{url: srv.URL, env: e, logs: logs}
}

func (a *adminHTTP) do(t *testing.T, method, path, token, body string, hdr map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: body %q is not JSON", method, path, b)
		}
	} else {
		m = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, resp.Header, m
}

func TestAdminHTTPAuth(t *testing.T) {
	t.Parallel()
	a := newAdminHTTP(t, nil)
	tests := []struct {
		name, token string
		raw         string // Authorization header as sent, when set
		want        int
		errPart     string
	}{
		{name: "no token", want: 401, errPart: "missing admin token"},
		{name: "wrong token", token: "wrong", want: 401, errPart: "invalid admin token"},
		{name: "prefix of token", token: testAdminToken[:10], want: 401, errPart: "invalid admin token"},
		{name: "basic auth", raw: "Basic " + testAdminToken, want: 401, errPart: "missing admin token"},
		{name: "right token", token: testAdminToken, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr := map[string]string{}
			if tt.raw != "" {
				hdr["Authorization"] = tt.raw
			}
			for _, path := range []string{"/admin/api/agents", "/admin/api/installations", "/admin/api/audit", "/admin/api/agents/ag-x/dead-letters"} {
				status, h, body := a.do(t, "GET", path, tt.token, "", hdr)
				if tt.want == 200 && path == "/admin/api/agents/ag-x/dead-letters" {
					if status != 404 { // authenticated: the agent is unknown
						t.Errorf("%s: %d %v, want 404", path, status, body)
					}
					continue
				}
				if status != tt.want {
					t.Errorf("%s: %d %v, want %d", path, status, body, tt.want)
				}
				if tt.want == 401 {
					if e, _ := body["error"].(string); !strings.Contains(e, tt.errPart) {
						t.Errorf("%s: error %q, want it to say %q", path, e, tt.errPart)
					}
					if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s: 401 without WWW-Authenticate: Bearer", path)
					}
				}
			}
			status, _, _ := a.do(t, "POST", "/admin/api/agents/ag-x/revoke", tt.token, `{"confirm":"ag-x"}`, hdr)
			if want := map[bool]int{true: 404, false: 401}[tt.want == 200]; status != want {
				t.Errorf("revoke: %d, want %d", status, want)
			}
		})
	}
	if strings.Contains(a.logs.String(), testAdminToken) || strings.Contains(a.logs.String(), testAdminToken[:10]) {
		t.Fatal("the admin token appears in the log")
	}
}

func TestAdminHTTPEndpoints(t *testing.T) {
	t.Parallel()
	aud := auditLogOf(t, 7)
	a := newAdminHTTP(t, aud)
	now := time.Now().UTC()
	a.env.addAgent(t, "T1", "ag-1", now)
	a.env.addAgent(t, "T2", "ag-2", now)
	ids := deadLetter(t, a.env.q, "ag-1", 2)
	tok := testAdminToken

	status, _, body := a.do(t, "GET", "/admin/api/installations", tok, "", nil)
	if insts, _ := body["installations"].([]any); status != 200 || len(insts) != 2 {
		t.Fatalf("installations: %d %v", status, body)
	}
	status, _, body = a.do(t, "GET", "/admin/api/agents", tok, "", nil)
	if agents, _ := body["agents"].([]any); status != 200 || len(agents) != 2 || body["idle_after_seconds"] != float64(86400) {
		t.Fatalf("agents: %d %v", status, body)
	}
	status, _, body = a.do(t, "GET", "/admin/api/agents?org=T2", tok, "", nil)
	agents, _ := body["agents"].([]any)
	if status != 200 || len(agents) != 1 || agents[0].(map[string]any)["id"] != "ag-2" {
		t.Fatalf("agents of T2: %d %v", status, body)
	}
	status, _, body = a.do(t, "GET", "/admin/api/agents/ag-1", tok, "", nil)
	if ag, _ := body["agent"].(map[string]any); status != 200 || ag["dead_letters"] != float64(2) || ag["org_id"] != "T1" {
		t.Fatalf("agent: %d %v", status, body)
	}
	status, _, body = a.do(t, "GET", "/admin/api/agents/ag-1/dead-letters?limit=10", tok, "", nil)
	dls, _ := body["dead_letters"].([]any)
	if status != 200 || len(dls) != 2 {
		t.Fatalf("dead letters: %d %v", status, body)
	}
	for _, d := range dls {
		m := d.(map[string]any)
		if _, hasBody := m["body"]; hasBody || m["size"] != float64(len(`{"secret-body":0}`)) {
			t.Fatalf("dead letter view %v: want size and no body", m)
		}
	}
	status, _, body = a.do(t, "POST", "/admin/api/agents/ag-1/dead-letters/redrive", tok, `{"confirm":"ag-1","ids":["`+ids[0]+`"]}`, nil)
	if status != 200 || body["redriven"] != float64(1) {
		t.Fatalf("redrive one: %d %v", status, body)
	}
	status, _, body = a.do(t, "POST", "/admin/api/agents/ag-1/dead-letters/purge", tok, `{"confirm":"ag-1"}`, nil)
	if status != 200 || body["purged"] != float64(1) {
		t.Fatalf("purge: %d %v", status, body)
	}
	status, _, body = a.do(t, "GET", "/admin/api/audit?n=5", tok, "", nil)
	recs, _ := body["records"].([]any)
	if status != 200 || body["enabled"] != true || len(recs) != 5 {
		t.Fatalf("audit: %d %v, want the 5 newest of 7 records", status, body)
	}
	if last, _ := recs[4].(map[string]any); last["seq"] != float64(7) || last["kind"] != "revoke" || last["agent_id"] != "ag-1" || last["summary"] != "outcome=ok" {
		t.Fatalf("newest audit row: %v", recs[4])
	}
	status, _, body = a.do(t, "POST", "/admin/api/agents/ag-1/revoke", tok, `{"confirm":"ag-1"}`, nil)
	if rv, _ := body["revoked"].(map[string]any); status != 200 || rv["agent_id"] != "ag-1" || rv["dropped"] != float64(1) {
		t.Fatalf("revoke: %d %v", status, body)
	}
	if _, err := a.env.st.GetAgent(context.Background(), "ag-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("agent after revoke: %v", err)
	}
	status, _, body = a.do(t, "POST", "/admin/api/agents/ag-1/revoke", tok, `{"confirm":"ag-1"}`, nil)
	if status != 404 || body["error"] != "unknown agent ag-1" {
		t.Fatalf("second revoke: %d %v", status, body)
	}
	aud.fail.Store(true)
	if status, _, body = a.do(t, "GET", "/admin/api/audit", tok, "", nil); status != 503 || strings.Contains(body["error"].(string), "fire") {
		t.Fatalf("failing tailer: %d %v, want 503 without the internal error", status, body)
	}
}

func TestAdminHTTPAuditNotConfigured(t *testing.T) {
	t.Parallel()
	a := newAdminHTTP(t, nil)
	status, _, body := a.do(t, "GET", "/admin/api/audit", testAdminToken, "", nil)
	if recs, ok := body["records"].([]any); status != 200 || body["enabled"] != false || !ok || len(recs) != 0 {
		t.Fatalf("audit without tailer: %d %v", status, body)
	}
}

func TestAdminHTTPBadInput(t *testing.T) {
	t.Parallel()
	a := newAdminHTTP(t, nil)
	a.env.addAgent(t, "T1", "ag-1", time.Now())
	tok := testAdminToken
	big := `{"confirm":"ag-1","ids":["` + strings.Repeat("a", maxAdminBody) + `"]}`
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		want                     int
		errPart                  string
	}{
		{"malformed agent id", "GET", "/admin/api/agents/bad%20id", "", nil, 400, "agent id"},
		{"unknown agent", "GET", "/admin/api/agents/ag-nobody", "", nil, 404, "unknown agent ag-nobody"},
		{"bad org", "GET", "/admin/api/agents?org=not%20an%20org", "", nil, 400, "invalid org"},
		{"limit zero", "GET", "/admin/api/agents/ag-1/dead-letters?limit=0", "", nil, 400, "invalid limit"},
		{"limit text", "GET", "/admin/api/agents/ag-1/dead-letters?limit=x", "", nil, 400, "invalid limit"},
		{"limit too big", "GET", "/admin/api/agents/ag-1/dead-letters?limit=1001", "", nil, 400, "invalid limit"},
		{"audit n", "GET", "/admin/api/audit?n=0", "", nil, 400, "invalid n"},
		{"no body", "POST", "/admin/api/agents/ag-1/revoke", "", nil, 400, "empty body"},
		{"not json", "POST", "/admin/api/agents/ag-1/revoke", "yes", nil, 400, "invalid JSON body"},
		{"missing confirm", "POST", "/admin/api/agents/ag-1/revoke", `{}`, nil, 400, "missing confirm"},
		{"confirm mismatch", "POST", "/admin/api/agents/ag-1/revoke", `{"confirm":"ag-2"}`, nil, 400, "confirm does not match"},
		{"wrong route", "POST", "/admin/api/agents/ag-1/purge", `{"confirm":"ag-1","force":true}`, nil, 404, "no admin API route"},
		{"unknown field in body", "POST", "/admin/api/agents/ag-1/dead-letters/purge", `{"confirm":"ag-1","force":true}`, nil, 400, `unknown field "force"`},
		{"ids on revoke", "POST", "/admin/api/agents/ag-1/revoke", `{"confirm":"ag-1","ids":["x"]}`, nil, 400, "ids is not an argument"},
		{"ids wrong type", "POST", "/admin/api/agents/ag-1/dead-letters/redrive", `{"confirm":"ag-1","ids":"x"}`, nil, 400, "ids has the wrong type"},
		{"bad message id", "POST", "/admin/api/agents/ag-1/dead-letters/redrive", `{"confirm":"ag-1","ids":["a#1"]}`, nil, 400, "message id"},
		{"body too large", "POST", "/admin/api/agents/ag-1/dead-letters/redrive", big, nil, 413, "request body over"},
		{"form post", "POST", "/admin/api/agents/ag-1/revoke", `confirm=ag-1`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"},
		{"cross origin", "POST", "/admin/api/agents/ag-1/revoke", `{"confirm":"ag-1"}`, map[string]string{"Origin": "https://evil.example"}, 403, "cross-origin"},
		{"GET on revoke", "GET", "/admin/api/agents/ag-1/revoke", "", nil, 404, "no admin API route GET"},
		{"unknown route", "GET", "/admin/api/nothing", "", nil, 404, "no admin API route"},
		{"outside admin", "GET", "/api/inbox/pull", "", nil, 404, "admin page is at /admin/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, _, body := a.do(t, tt.method, tt.path, tok, tt.body, tt.hdr)
			if status != tt.want {
				t.Fatalf("%d %v, want %d", status, body, tt.want)
			}
			if e, _ := body["error"].(string); tt.errPart != "" && !strings.Contains(e, tt.errPart) {
				t.Fatalf("error %q, want it to say %q", e, tt.errPart)
			}
		})
	}
	if _, err := a.env.st.GetAgent(context.Background(), "ag-1"); err != nil {
		t.Fatalf("a refused request changed the agent: %v", err)
	}
}

func TestAdminPageServedWithStrictCSP(t *testing.T) {
	t.Parallel()
	a := newAdminHTTP(t, nil)
	for _, tt := range []struct{ path, ctype, must string }{
		{"/admin/", "text/html", `<script src="/admin/admin.js" defer></script>`},
		{"/admin/admin.js", "text/javascript", "Authorization"},
		{"/admin/admin.css", "text/css", "table"},
	} {
		status, h, body := a.do(t, "GET", tt.path, "", "", nil) // static files need no token
		raw, _ := body["raw"].(string)
		if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), tt.ctype) || !strings.Contains(raw, tt.must) {
			t.Fatalf("%s: %d %s, want %s containing %q", tt.path, status, h.Get("Content-Type"), tt.ctype, tt.must)
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %q", tt.path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: headers %v", tt.path, h)
		}
		if tt.ctype == "text/html" {
			// No inline script or handler: every <script> has a src.
			if strings.Count(raw, "<script") != strings.Count(raw, "<script src=") || strings.Contains(raw, "onclick=") || strings.Contains(raw, "onsubmit=") {
				t.Errorf("index.html has inline script")
			}
		}
	}
	status, h, _ := a.do(t, "GET", "/admin", "", "", nil)
	if status != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") { // redirect followed
		t.Fatalf("/admin: %d", status)
	}
}

// FuzzAdminAPI: whatever path, query and body an authenticated client
// sends, the admin API answers JSON, never a 5xx (the store is healthy),
// and every non-200 carries an error text; the agent it may name is only
// revoked when confirm repeats its id.
func FuzzAdminAPI(f *testing.F) {
	for _, s := range [][3]string{
		{"POST", "agents/ag-1/revoke", `{"confirm":"ag-1"}`},
		{"POST", "agents/ag-1/dead-letters/redrive", `{"confirm":"ag-1","ids":["abc"]}`},
		{"POST", "agents/ag-1/dead-letters/purge", `{"confirm":"ag-1","ids":null}`},
		{"GET", "agents/ag-1/dead-letters?limit=5", ""},
		{"GET", "agents?org=T1", ""},
		{"GET", "audit?n=3", ""},
		{"POST", "agents/ag-1/revoke", `{"confirm":1}`},
		{"POST", "agents/%2e%2e/revoke", `{"confirm":".."}`},
		{"GET", "audit/chains", ""},
		{"GET", "audit/chains/abc/records?start=1&n=2", ""},
		{"GET", "audit/chains/abc/checkpoints", ""},
		{"GET", "audit/chains/ABC/records?start=-1&n=1001", ""},
		{"POST", "audit/verify", ""},
		{"POST", "audit/verify", "{}"},
		{"POST", "audit/verify", `{"chain":"abc"}`},
	} {
		f.Add(s[0], s[1], s[2])
	}
	bs, err := boltstore.Open(f.TempDir(), queue.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = bs.Close() })
	adm, err := NewAdmin(bs, bs.Inbox, AdminOptions{})
	if err != nil {
		f.Fatal(err)
	}
	ast := audit.NewMemStore()
	writeTestChain(f, ast, 4)
	h := NewAdminHandler(adm, AdminHandlerOptions{Token: testAdminToken, AuditStore: ast, AuditKeys: testAuditKeys(f),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if method != "GET" {
			method = "POST"
		}
		req, err := http.NewRequest(method, "http://admin/admin/api/"+path, strings.NewReader(body))
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code == http.StatusMovedPermanently || rec.Code == http.StatusTemporaryRedirect || rec.Code == http.StatusPermanentRedirect {
			return // the mux cleaning a path; no handler ran
		}
		var resp struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("%s %s %q: %d body %q is not JSON", method, path, body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && (resp.OK || resp.Error == "") {
			t.Fatalf("%s %s %q: %d without an error text: %s", method, path, body, rec.Code, rec.Body)
		}
	})
}

package broker

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

// withAudit wires an in-memory audit log into the harness's broker.
func withAudit(t *testing.T, st *audit.MemStore) harnessOpt {
	return func(h *harness) {
		keys, err := audit.DeriveKeys(h.keys.Signing)
		if err != nil {
			t.Fatal(err)
		}
		l, err := audit.NewLog(st, keys, audit.Options{CheckpointInterval: -1, Logger: slog.New(slog.NewJSONHandler(h.logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		h.cfg.Audit = l
	}
}

// mint mints a registration token of mode for org on the harness's broker.
func (h *harness) mint(org string, mode state.RegistrationMode) string {
	h.t.Helper()
	tok, _, err := h.srv.MintRegistrationToken(context.Background(), org, mode)
	if err != nil {
		h.t.Fatalf("mint %s token: %v", mode, err)
	}
	return tok
}

func (h *harness) agentIDs(org string) []string {
	h.t.Helper()
	list, err := h.st.ListAgents(context.Background(), org)
	if err != nil {
		h.t.Fatal(err)
	}
	var ids []string
	for _, a := range list {
		ids = append(ids, a.ID)
	}
	return ids
}

// TestReplaceRegistration: agents A and C are registered and A has a
// queued event; B registers with a replace token: A and C get 401 on
// their next pull, their inboxes are gone, each is audited as
// revoke/replaced, B alone gets the next event, and the replace token
// works once. On both engines.
func TestReplaceRegistration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		mem := audit.NewMemStore()
		h := newHarness(t, engine, withAudit(t, mem))
		org, tok := h.install(slackfake.Install{TeamID: "T0RPL0001"})
		a := h.register(org, tok)
		c := h.register(org, h.mint(org, state.RegistrationAdd))
		aID, cID := agentID(t, h, a), agentID(t, h, c)
		ev, _ := eventBody(org, "before the replacement")
		h.postEvent(h.url, ev)
		if st, err := h.q.Stats(context.Background(), aID); err != nil || st.Depth() != 1 {
			t.Fatalf("A's inbox before: %+v %v", st, err)
		}

		rep := h.mint(org, state.RegistrationReplace)
		b := h.register(org, rep)
		bID := agentID(t, h, b)
		if ids := h.agentIDs(org); len(ids) != 1 || ids[0] != bID {
			t.Fatalf("agents after replace: %v, want only %s", ids, bID)
		}
		for name, old := range map[string]*agentClient{"A": a, "C": c} {
			if status, body := old.pullRaw(old.pullBody(10, 0, old.now())); status != http.StatusUnauthorized {
				t.Fatalf("%s's pull after replace: %d %s, want 401", name, status, body)
			}
		}
		for _, id := range []string{aID, cID} {
			if st, err := h.q.Stats(context.Background(), id); err != nil || st.Depth() != 0 {
				t.Fatalf("inbox of replaced %s: %+v %v, want deleted", id, st, err)
			}
		}
		ev2, id2 := eventBody(org, "after the replacement")
		h.postEvent(h.url, ev2)
		msgs := b.pull(10, 0)
		if len(msgs) != 1 || !strings.Contains(string(msgs[0].Env.Payload), id2) {
			t.Fatalf("B pulled %d messages, want exactly the event after the replacement", len(msgs))
		}
		if status, body := h.newAgentKeys(org).tryRegister(rep); status != http.StatusForbidden ||
			!strings.Contains(errorText(t, body), protocol.ErrRegistrationTokenUsed) {
			t.Fatalf("replace token reused: %d %s", status, body)
		}
		recs, _ := auditRecords(t, mem)
		replaced := map[string]bool{}
		for _, r := range recordsOf(recs, audit.KindRevoke) {
			if r.Outcome != AuditOutcomeReplaced || r.Org != org {
				t.Fatalf("revoke record %+v, want outcome replaced for %s", r.Event, org)
			}
			replaced[r.Agent] = true
		}
		if len(replaced) != 2 || !replaced[aID] || !replaced[cID] {
			t.Fatalf("revoke/replaced records for %v, want %s and %s", replaced, aID, cID)
		}
	})
}

// TestReplaceUnderAgentsPerOrgOne: with --agents-per-org 1 an add token
// is refused 409 while one agent is registered, a replace token swaps it.
func TestReplaceUnderAgentsPerOrgOne(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine harnessOpt) {
		h := newHarness(t, engine, withConfig(func(c *Config) { c.AgentsPerOrg = 1 }))
		org, tok := h.install(slackfake.Install{TeamID: "T0RPL0002"})
		h.register(org, tok)
		tests := []struct {
			mode state.RegistrationMode
			want int
		}{
			{state.RegistrationAdd, http.StatusConflict},
			{state.RegistrationReplace, http.StatusOK},
			{state.RegistrationReplace, http.StatusOK},
		}
		for _, tt := range tests {
			n := h.newAgentKeys(org)
			if status, body := n.tryRegister(h.mint(org, tt.mode)); status != tt.want {
				t.Fatalf("%s registration: %d %s, want %d", tt.mode, status, body, tt.want)
			}
			if ids := h.agentIDs(org); len(ids) != 1 {
				t.Fatalf("after %s: %d agents, want 1", tt.mode, len(ids))
			}
		}
	})
}

var grantPattern = regexp.MustCompile(`name="grant" value="([A-Za-z0-9_-]+)"`)

func postForm(t *testing.T, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, html.UnescapeString(string(b))
}

// TestInstallPageReplaceButton: the page after OAuth shows the add token
// and a POST form with a one-time grant (never in a URL or log); posting
// it shows a replace token that replaces the agents; the grant works once.
func TestInstallPageReplaceButton(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.QueueInstall(slackfake.Install{TeamID: "T0RPL0003"})
	status, page := h.installFlow(h.url)
	if status != http.StatusOK {
		t.Fatalf("install: %d %s", status, page)
	}
	m, g := tokenPattern.FindStringSubmatch(page), grantPattern.FindStringSubmatch(page)
	if m == nil || g == nil {
		t.Fatalf("install page lacks the add token or the replace form: %s", page)
	}
	if !strings.Contains(page, `method="post" action="`+MintReplacePath+`"`) || !strings.Contains(page, "Add an agent") {
		t.Fatalf("install page: no POST form to %s or no add-an-agent text", MintReplacePath)
	}
	org := "T0RPL0003"
	a := h.register(org, m[1])

	bad := []struct {
		name string
		form url.Values
		want int
	}{
		{"no grant", url.Values{}, http.StatusBadRequest},
		{"unknown grant", url.Values{"grant": {"not-a-grant-0123456789abcdef"}}, http.StatusBadRequest},
		{"oversized grant", url.Values{"grant": {strings.Repeat("a", 300)}}, http.StatusBadRequest},
	}
	for _, tt := range bad {
		if st, body := postForm(t, h.url+MintReplacePath, tt.form); st != tt.want {
			t.Fatalf("%s: %d %s, want %d", tt.name, st, body, tt.want)
		}
	}
	if st, _, _ := do(t, http.MethodGet, h.url+MintReplacePath+"?grant="+g[1], "", nil, nil); st != http.StatusMethodNotAllowed {
		t.Fatalf("GET with the grant in the query: %d, want 405", st)
	}
	st, rpage := postForm(t, h.url+MintReplacePath, url.Values{"grant": {g[1]}})
	if st != http.StatusOK || !strings.Contains(rpage, "Replace the current agents") {
		t.Fatalf("mint replace: %d %s", st, rpage)
	}
	rm := tokenPattern.FindStringSubmatch(rpage)
	if rm == nil || rm[1] == m[1] {
		t.Fatalf("replace page lacks a new token: %s", rpage)
	}
	if grantPattern.MatchString(rpage) {
		t.Fatal("the replace page offers another grant")
	}
	if st, _ := postForm(t, h.url+MintReplacePath, url.Values{"grant": {g[1]}}); st != http.StatusBadRequest {
		t.Fatalf("grant reused: %d, want 400", st)
	}
	b := h.register(org, rm[1])
	if ids := h.agentIDs(org); len(ids) != 1 || ids[0] != agentID(t, h, b) {
		t.Fatalf("agents after the page's replace token: %v", ids)
	}
	if status, _ := a.pullRaw(a.pullBody(1, 0, a.now())); status != http.StatusUnauthorized {
		t.Fatalf("replaced agent's pull: %d, want 401", status)
	}
	if strings.Contains(h.logs.String(), g[1]) || strings.Contains(h.logs.String(), rm[1]) {
		t.Fatal("a grant or token was logged")
	}
	h.assertNoSecrets(g[1], rm[1])
}

// TestAdminMintToken: POST /admin/api/orgs/{org}/registration-tokens mints
// add and replace tokens that work as such, and refuses bad input.
func TestAdminMintToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, tok := h.install(slackfake.Install{TeamID: "T0RPL0004"})
	h.register(org, tok)
	adm, err := h.srv.Admin(AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const admTok = "admin-token-0123456789abcdef0123"
	srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: admTok}))
	t.Cleanup(srv.Close)
	detached, err := NewAdmin(h.st, h.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dsrv := httptest.NewServer(NewAdminHandler(detached, AdminHandlerOptions{Token: admTok}))
	t.Cleanup(dsrv.Close)
	tests := []struct {
		name, base, org, body string
		want                  int
		wantErr               string
	}{
		{"add", srv.URL, org, `{"mode":"add","confirm":"` + org + `"}`, http.StatusOK, ""},
		{"default mode is add", srv.URL, org, `{"confirm":"` + org + `"}`, http.StatusOK, ""},
		{"replace", srv.URL, org, `{"mode":"replace","confirm":"` + org + `"}`, http.StatusOK, ""},
		{"bad mode", srv.URL, org, `{"mode":"swap","confirm":"` + org + `"}`, http.StatusBadRequest, "invalid mode"},
		{"confirm mismatch", srv.URL, org, `{"mode":"replace","confirm":"T0OTHER"}`, http.StatusBadRequest, "confirm does not match"},
		{"unknown field", srv.URL, org, `{"mode":"replace","confirm":"` + org + `","x":1}`, http.StatusBadRequest, "unknown field"},
		{"not installed", srv.URL, "T0NOPE0001", `{"mode":"add","confirm":"T0NOPE0001"}`, http.StatusNotFound, "no installation"},
		{"bad org", srv.URL, "bad%20org", `{"mode":"add","confirm":"bad org"}`, http.StatusBadRequest, "invalid org"},
		{"no running broker", dsrv.URL, org, `{"mode":"add","confirm":"` + org + `"}`, http.StatusNotImplemented, "running broker"},
	}
	var minted = map[string]string{}
	for _, tt := range tests {
		status, _, body := do(t, http.MethodPost, tt.base+"/admin/api/orgs/"+tt.org+"/registration-tokens", admTok, []byte(tt.body), nil)
		if status != tt.want {
			t.Fatalf("%s: %d %s, want %d", tt.name, status, body, tt.want)
		}
		if tt.wantErr != "" {
			if e := errorText(t, body); !strings.Contains(e, tt.wantErr) {
				t.Fatalf("%s: error %q lacks %q", tt.name, e, tt.wantErr)
			}
			continue
		}
		m := regexp.MustCompile(`"token":"([A-Za-z0-9_-]+)"`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("%s: no token in %s", tt.name, body)
		}
		minted[tt.name] = string(m[1])
	}
	h.register(org, minted["add"])
	if n := len(h.agentIDs(org)); n != 2 {
		t.Fatalf("after the admin add token: %d agents, want 2", n)
	}
	b := h.register(org, minted["replace"])
	if ids := h.agentIDs(org); len(ids) != 1 || ids[0] != agentID(t, h, b) {
		t.Fatalf("after the admin replace token: %v", ids)
	}
	if strings.Contains(h.logs.String(), minted["replace"]) {
		t.Fatal("a minted token was logged")
	}
}

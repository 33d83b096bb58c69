package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

const cliAdminToken = "cli-admin-token-0123456789abcdef0123"

// adminFixture is a store with agents, served by an admin handler.
type adminFixture struct {
	st        state.Store
	q         queue.Store
	hk        *broker.HashKey
	url       string
	tokenFile string
}

func newHashKey(t *testing.T) *broker.HashKey {
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	hk, err := broker.DeriveHashKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return hk
}

// newBoltFixture opens an embedded store (queue lease 50 ms, one delivery,
// so dead letters are quick to make) and serves its admin API.
func newBoltFixture(t *testing.T) *adminFixture {
	t.Helper()
	bs, err := boltstore.Open(t.TempDir(), queue.Options{Lease: 50 * time.Millisecond, MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bs.Close() })
	st, q := bs, bs.Inbox
	f := &adminFixture{st: st, q: q, hk: newHashKey(t), tokenFile: writeFile(t, cliAdminToken+"\n")}
	adm, err := broker.NewAdmin(st, q, broker.AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(broker.NewAdminHandler(adm, broker.AdminHandlerOptions{Token: cliAdminToken,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *adminFixture) addAgent(t *testing.T, org, id string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.st.GetInstallation(ctx, org); errors.Is(err, state.ErrNotFound) {
		if err := f.st.PutInstallation(ctx, &state.Installation{OrgID: org, InstalledAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	rt := f.hk.Hash(broker.KindRegistrationToken, "reg-"+id)
	if err := f.st.PutRegistrationToken(ctx, rt, org, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := &state.Agent{ID: id, OrgID: org, BoxPublicKey: box.Public, SigningPublicKey: sig.Public(), CreatedAt: at,
		AccessTokenHash: f.hk.Hash(broker.KindAccessToken, "tok-"+id), AccessTokenExpiresAt: at.Add(90 * 24 * time.Hour)}
	if err := f.st.RegisterAgent(ctx, rt, a, at, 0); err != nil {
		t.Fatal(err)
	}
}

// deadLetters makes n dead letters in inbox (single-delivery queue).
func (f *adminFixture) deadLetters(t *testing.T, inbox string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for range n {
		id, err := f.q.Enqueue(ctx, inbox, []byte("sealed-body"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for range 200 {
		if st, err := f.q.Stats(ctx, inbox); err != nil || st.DeadLetters == n {
			return ids
		}
		if _, err := f.q.Pull(ctx, inbox, queue.MaxPull, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("no %d dead letters", n)
	return nil
}

// tty is a cliIO whose terminal answers with input.
func tty(input string) cliIO {
	return cliIO{stdin: strings.NewReader(input), isTTY: func() bool { return true }}
}

var noTTY = cliIO{stdin: strings.NewReader(""), isTTY: func() bool { return false }}

// runCLI runs `broker agents|dlq args...` and returns stdout, stderr, error.
func runCLI(t *testing.T, tio cliIO, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	var err error
	switch args[0] {
	case "agents":
		err = runAgents(context.Background(), args[1:], envMap(nil), &out, &errb, tio)
	case "dlq":
		err = runDLQ(context.Background(), args[1:], envMap(nil), &out, &errb, tio)
	default:
		t.Fatalf("runCLI %v", args)
	}
	return out.String(), errb.String(), err
}

func (f *adminFixture) conn() []string {
	return []string{"--admin-url", f.url, "--admin-token-file", f.tokenFile}
}

func TestAgentsListTable(t *testing.T) {
	t.Parallel()
	f := newBoltFixture(t)
	now := time.Now().UTC()
	f.addAgent(t, "T1", "ag-0001", now.Add(-72*time.Hour))
	f.addAgent(t, "T2", "ag-0002-longer-id", now)
	if err := f.st.RecordPull(context.Background(), "ag-0002-longer-id", now.Add(-5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCLI(t, noTTY, append([]string{"agents", "list"}, f.conn()...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", out)
	}
	header := lines[0]
	cols := []string{"AGENT", "ORG", "REGISTERED", "LAST PULL", "READY", "LEASED", "DEAD", "TOKEN EXPIRES", "CAPABILITIES", "IDLE"}
	for _, c := range cols {
		if !strings.Contains(header, c) {
			t.Fatalf("header %q lacks %s", header, c)
		}
	}
	// Aligned: every row has its org and last pull under the header's.
	orgCol, pullCol := strings.Index(header, "ORG"), strings.Index(header, "LAST PULL")
	tests := []struct {
		line        string
		org, pull   string
		idle        bool
		wantPrefixs string
	}{
		{lines[1], "T1", "never", true, "ag-0001 "},
		{lines[2], "T2", "5m ago", false, "ag-0002-longer-id "},
	}
	for _, tt := range tests {
		if !strings.HasPrefix(tt.line, tt.wantPrefixs) || !strings.HasPrefix(tt.line[orgCol:], tt.org+" ") || !strings.HasPrefix(tt.line[pullCol:], tt.pull) {
			t.Errorf("row %q: want org %s at column %d and last pull %q at %d", tt.line, tt.org, orgCol, tt.pull, pullCol)
		}
		if strings.HasSuffix(tt.line, "idle") != tt.idle {
			t.Errorf("row %q: idle flag, want %v", tt.line, tt.idle)
		}
	}

	out, _, err = runCLI(t, noTTY, append([]string{"agents", "list", "--json", "--org", "T2"}, f.conn()...)...)
	if err != nil {
		t.Fatal(err)
	}
	var list []broker.AgentView
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].ID != "ag-0002-longer-id" || list[0].LastPull.IsZero() {
		t.Fatalf("--json --org T2: %s (%v)", out, err)
	}
	out, _, err = runCLI(t, noTTY, append([]string{"agents", "list", "--org", "T9"}, f.conn()...)...)
	if err != nil || !strings.Contains(out, "(no agents registered)") {
		t.Fatalf("empty org: %q %v", out, err)
	}
}

func TestAgentsRevokeConfirmation(t *testing.T) {
	t.Parallel()
	f := newBoltFixture(t)
	f.addAgent(t, "T1", "ag-1", time.Now())
	revoke := append([]string{"agents", "revoke"}, f.conn()...)
	tests := []struct {
		name    string
		tio     cliIO
		extra   []string
		wantErr string
	}{
		{"no tty, no --yes", noTTY, nil, "stdin is not a terminal; pass --yes"},
		{"tty, wrong answer", tty("yes\n"), nil, "not confirmed"},
		{"tty, empty answer", tty(""), nil, "not confirmed"},
	}
	for _, tt := range tests {
		_, _, err := runCLI(t, tt.tio, append(revoke, "ag-1")...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, new(usageError)) {
			t.Errorf("%s: %v, want usage error %q", tt.name, err, tt.wantErr)
		}
	}
	if _, err := f.st.GetAgent(context.Background(), "ag-1"); err != nil {
		t.Fatalf("an unconfirmed revoke changed the agent: %v", err)
	}
	out, prompt, err := runCLI(t, tty("ag-1\n"), append(revoke, "ag-1")...)
	if err != nil || !strings.Contains(out, "revoked agent ag-1 of T1") || !strings.Contains(prompt, `Type "ag-1" to confirm`) {
		t.Fatalf("confirmed revoke: %q %q %v", out, prompt, err)
	}
	if _, err := f.st.GetAgent(context.Background(), "ag-1"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("agent after revoke: %v", err)
	}
	_, _, err = runCLI(t, noTTY, append(revoke, "--yes", "ag-1")...)
	if err == nil || err.Error() != "unknown agent ag-1" {
		t.Fatalf("revoke of an unknown agent: %v", err)
	}
}

func TestDLQCommands(t *testing.T) {
	t.Parallel()
	f := newBoltFixture(t)
	f.addAgent(t, "T1", "ag-1", time.Now())
	ids := f.deadLetters(t, "ag-1", 3)

	out, _, err := runCLI(t, noTTY, append([]string{"dlq", "list", "ag-1"}, f.conn()...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "MESSAGE ID") || !strings.Contains(out, "3 dead letters of ag-1") || strings.Contains(out, "sealed-body") {
		t.Fatalf("dlq list:\n%s", out)
	}
	for _, id := range ids {
		if !strings.Contains(out, id+"  1 ") {
			t.Errorf("dlq list lacks %s with 1 delivery:\n%s", id, out)
		}
	}
	// Flags after the agent id work too.
	out, _, err = runCLI(t, noTTY, append([]string{"dlq", "list", "ag-1", "--json", "--limit", "2"}, f.conn()...)...)
	var list []broker.DeadLetterView
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[0].Size != len("sealed-body") {
		t.Fatalf("dlq list --json --limit 2: %q %v", out, err)
	}
	out, _, err = runCLI(t, noTTY, append([]string{"dlq", "redrive", "--id", ids[0], "--id", ids[1], "ag-1"}, f.conn()...)...)
	if err != nil || strings.TrimSpace(out) != "redrove 2 dead letters of ag-1 back to its inbox" {
		t.Fatalf("redrive two: %q %v", out, err)
	}
	if _, _, err := runCLI(t, noTTY, append([]string{"dlq", "purge", "ag-1"}, f.conn()...)...); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("purge without confirmation: %v", err)
	}
	out, _, err = runCLI(t, noTTY, append([]string{"dlq", "purge", "--yes", "--json", "ag-1"}, f.conn()...)...)
	var res struct {
		Purged int `json:"purged"`
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || res.Purged != 1 {
		t.Fatalf("purge --json: %q %v", out, err)
	}
	out, _, err = runCLI(t, noTTY, append([]string{"dlq", "redrive", "ag-1"}, f.conn()...)...)
	if err != nil || !strings.HasPrefix(out, "redrove 0 ") {
		t.Fatalf("redrive all of none: %q %v", out, err)
	}
	if st, _ := f.q.Stats(context.Background(), "ag-1"); st.Ready != 2 || st.DeadLetters != 0 {
		t.Fatalf("inbox after redrive and purge: %+v", st)
	}
}

func TestAdminCLIErrors(t *testing.T) {
	t.Parallel()
	f := newBoltFixture(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	wrongToken := writeFile(t, "not-the-token\n")
	tests := []struct {
		name    string
		args    []string
		usage   bool
		wantErr string
	}{
		{"unreachable", []string{"agents", "list", "--admin-url", closedURL, "--admin-token-file", f.tokenFile}, false, "admin listener not reachable at " + closedURL},
		{"wrong token", []string{"agents", "list", "--admin-url", f.url, "--admin-token-file", wrongToken}, false, "refused the token (401 invalid admin token)"},
		{"no token file", []string{"agents", "list", "--admin-url", f.url}, true, "no admin token"},
		{"missing token file", []string{"agents", "list", "--admin-token-file", "/nonexistent/admin.token"}, false, "read admin token file /nonexistent/admin.token"},
		{"unknown agent", []string{"dlq", "list", "ag-nobody", "--admin-url", f.url, "--admin-token-file", f.tokenFile}, false, "unknown agent ag-nobody"},
		{"bad agent id", []string{"dlq", "list", "bad/id", "--admin-url", f.url, "--admin-token-file", f.tokenFile}, true, "agent id"},
		{"no agent id", []string{"dlq", "purge", "--yes"}, true, "want exactly one AGENT_ID"},
		{"two agent ids", []string{"agents", "revoke", "a", "b"}, true, "want exactly one AGENT_ID"},
		{"unknown subcommand", []string{"dlq", "show", "ag-1"}, true, "want `broker dlq list|redrive|purge"},
		{"no subcommand", []string{"agents"}, true, "want `broker agents list`"},
		{"unknown flag", []string{"agents", "list", "--color"}, true, "flag provided but not defined: -color"},
		{"--id outside redrive", []string{"dlq", "list", "--id", "x", "ag-1"}, true, "--id is a flag of broker dlq redrive"},
		{"bad limit", []string{"dlq", "list", "--limit", "0", "ag-1"}, true, "--limit must be 1 to 1000"},
		{"bad admin url", []string{"agents", "list", "--admin-url", "ftp://x", "--admin-token-file", f.tokenFile}, true, "is not http://HOST:PORT"},
		{"bad redis url", []string{"agents", "list", "--redis-url", "nope://x"}, true, "--redis-url is not a Redis URL"},
		{"not the admin listener", []string{"agents", "list", "--admin-url", "http://" + notJSON(t), "--admin-token-file", f.tokenFile}, false, "not JSON (is --admin-url the admin listener?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := runCLI(t, noTTY, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("%v, want an error saying %q", err, tt.wantErr)
			}
			if errors.As(err, new(usageError)) != tt.usage {
				t.Fatalf("%v: usage error %v, want %v", err, !tt.usage, tt.usage)
			}
			if strings.Contains(err.Error(), cliAdminToken) {
				t.Fatal("the error holds the admin token")
			}
		})
	}
	var out bytes.Buffer
	if err := runAgents(context.Background(), []string{"--help"}, envMap(nil), &out, &out, noTTY); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "broker agents revoke") {
		t.Fatalf("--help: %v %q", err, out.String())
	}
}

// notJSON serves a plain-text 200 on a loopback port and returns it.
func notJSON(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestAdminCLIDirectRedis(t *testing.T) {
	t.Parallel()
	rdb, prefix := testredis.New(t, "admincli")
	rs, err := redisstore.Open(rdb, prefix, redisstore.InboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	q := rs.Inbox
	f := &adminFixture{st: rs, q: q, hk: newHashKey(t)}
	f.addAgent(t, "T1", "ag-r1", time.Now())
	f.addAgent(t, "T1", "ag-r2", time.Now())
	if _, err := q.Enqueue(context.Background(), "ag-r2", []byte("x")); err != nil {
		t.Fatal(err)
	}
	direct := []string{"--redis-url", testredis.URL(t), "--redis-prefix", prefix}
	out, _, err := runCLI(t, noTTY, append([]string{"agents", "list", "--json"}, direct...)...)
	var list []broker.AgentView
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || list[1].Ready != 1 {
		t.Fatalf("direct list: %q %v", out, err)
	}
	if out, _, err = runCLI(t, noTTY, append([]string{"agents", "revoke", "--yes", "ag-r2"}, direct...)...); err != nil || !strings.Contains(out, "(1 queued messages deleted)") {
		t.Fatalf("direct revoke: %q %v", out, err)
	}
	if _, _, err = runCLI(t, noTTY, append([]string{"dlq", "list", "ag-r2"}, direct...)...); err == nil || err.Error() != "unknown agent ag-r2" {
		t.Fatalf("direct dlq list of the revoked agent: %v", err)
	}
	// The wrong prefix finds nothing rather than someone else's keys.
	out, _, err = runCLI(t, noTTY, "agents", "list", "--json", "--redis-url", testredis.URL(t), "--redis-prefix", prefix+"other:")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("other prefix: %q %v", out, err)
	}
}

// TestServeAdminListener runs `broker serve` on the embedded store (its
// bbolt files locked by the server) with the admin listener on TCP (token)
// and on a unix socket (file mode 0600), and drives both with the CLI.
func TestServeAdminListener(t *testing.T) {
	t.Parallel()
	tokenFile := writeFile(t, cliAdminToken+"\n")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	tests := []struct {
		name   string
		args   []string
		url    func(r *running) string
		mode   bool
		tokens bool
	}{
		{"tcp", []string{"--admin-listen", "127.0.0.1:0", "--admin-token-file", tokenFile},
			func(r *running) string { return "http://" + r.addrs.Admin.String() }, false, true},
		{"unix", []string{"--admin-listen", "unix:" + sock},
			func(*running) string { return "unix:" + sock }, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := startServe(t, tt.args, baseEnv(t))
			if r.addrs.Admin == nil {
				t.Fatal("no admin listener")
			}
			if tt.mode {
				fi, err := os.Stat(sock)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("socket %v mode %v, want 0600", err, fi.Mode())
				}
			}
			out, _, err := runCLI(t, noTTY, "agents", "list", "--json", "--admin-url", tt.url(r), "--admin-token-file", tokenFile)
			if err != nil || strings.TrimSpace(out) != "[]" {
				t.Fatalf("agents list on the running broker: %q %v", out, err)
			}
			if tt.tokens {
				resp, err := http.Get(tt.url(r) + "/admin/api/agents")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("no token: %d, want 401", resp.StatusCode)
				}
			}
			r.stop(t)
			if tt.mode {
				if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("socket left after shutdown: %v", err)
				}
			}
			if strings.Contains(r.logs.String(), cliAdminToken) {
				t.Fatal("the admin token is in the log")
			}
		})
	}
}

func TestAdminConfig(t *testing.T) {
	t.Parallel()
	token := writeFile(t, cliAdminToken)
	weak := writeFile(t, "short")
	tests := []struct {
		name    string
		args    []string
		network string
		wantErr string
		warn    string
	}{
		{"default without token: off, saying why", nil, "", "", "admin listener off"},
		{"default with token", []string{"--admin-token-file", token}, "tcp", "", ""},
		{"explicit tcp without token", []string{"--admin-listen", "127.0.0.1:9999"}, "", "is required while the admin listener is on TCP", ""},
		{"unix without token", []string{"--admin-listen", "unix:/run/x/admin.sock"}, "unix", "", ""},
		{"relative unix path", []string{"--admin-listen", "unix:admin.sock"}, "", "is not a unix socket path", ""},
		{"weak token", []string{"--admin-token-file", weak}, "", "is too weak", ""},
		{"off", []string{"--admin-listen", ""}, "", "", ""},
		{"same as public", []string{"--admin-listen", "127.0.0.1:8080", "--listen", "127.0.0.1:8080", "--admin-token-file", token}, "", "give the admin listener its own", ""},
		{"bad idle", []string{"--agent-idle-after", "5s"}, "", "--agent-idle-after", ""},
		{"idle days", []string{"--agent-idle-after", "7d", "--admin-listen", ""}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(tt.args, envMap(baseEnv(t)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), cliAdminToken) || strings.Contains(err.Error(), `"short"`) {
					t.Fatal("the error echoes the token")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Network != tt.network {
				t.Fatalf("network %q, want %q", c.Admin.Network, tt.network)
			}
			if !strings.Contains(c.Admin.OffReason, tt.warn) || (tt.warn == "" && c.Admin.OffReason != "") {
				t.Fatalf("off reason %q, want %q", c.Admin.OffReason, tt.warn)
			}
			if tt.name == "idle days" && c.Admin.IdleAfter != 7*24*time.Hour {
				t.Fatalf("idle after %v", c.Admin.IdleAfter)
			}
		})
	}
}

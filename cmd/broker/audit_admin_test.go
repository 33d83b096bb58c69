package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/audit/audittest"
	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

// auditAdmin serves the admin API (token cliAdminToken) over an audit
// store (nil: audit off) and returns its URL.
func auditAdmin(t testing.TB, st audit.Store) string {
	t.Helper()
	bs, err := boltstore.Open(t.TempDir(), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bs.Close() })
	adm, err := broker.NewAdmin(bs, bs.Inbox, broker.AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(broker.NewAdminHandler(adm, broker.AdminHandlerOptions{Token: cliAdminToken, AuditStore: st,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// listenerStore writes to a MemStore and reads it back through the admin
// listener.
type listenerStore struct {
	*audit.MemStore
	httpAuditStore
}

func (s listenerStore) Append(ctx context.Context, chain string, rec []byte) error {
	return s.MemStore.Append(ctx, chain, rec)
}
func (s listenerStore) Checkpoint(ctx context.Context, chain string, cp []byte) error {
	return s.MemStore.Checkpoint(ctx, chain, cp)
}
func (s listenerStore) Chains(ctx context.Context) ([]string, error) {
	return s.httpAuditStore.Chains(ctx)
}
func (s listenerStore) Len(ctx context.Context, chain string) (int64, error) {
	return s.httpAuditStore.Len(ctx, chain)
}
func (s listenerStore) Range(ctx context.Context, chain string, start int64, n int) ([][]byte, error) {
	return s.httpAuditStore.Range(ctx, chain, start, n)
}
func (s listenerStore) Checkpoints(ctx context.Context, chain string) ([][]byte, error) {
	return s.httpAuditStore.Checkpoints(ctx, chain)
}

func newHTTPAuditStore(t *testing.T, url string) httpAuditStore {
	t.Helper()
	h, err := newHTTPAdmin(url, cliAdminToken)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return httpAuditStore{h}
}

// TestHTTPAuditStoreConformance: read through the admin listener, a store
// answers exactly as the engine behind it (the audit.Store conformance
// suite, writes going to the engine directly).
func TestHTTPAuditStoreConformance(t *testing.T) {
	t.Parallel()
	audittest.Run(t, func(t *testing.T) audit.Store {
		ms := audit.NewMemStore()
		return listenerStore{ms, newHTTPAuditStore(t, auditAdmin(t, ms))}
	})
}

// TestHTTPAuditStorePagesAndRefusesWrites: reads longer than one page of
// the listener come back whole and in order; writes are refused.
func TestHTTPAuditStorePagesAndRefusesWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ms := audit.NewMemStore()
	n := broker.MaxAuditRange*2 + 7
	for i := range n {
		if err := ms.Append(ctx, "long", []byte{byte(i), byte(i >> 8), 0}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range broker.MaxAuditCheckpoints + 3 {
		if err := ms.Checkpoint(ctx, "long", []byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
	}
	st := newHTTPAuditStore(t, auditAdmin(t, ms))
	for _, tc := range []struct {
		start int64
		n     int
	}{{0, n + 10}, {5, broker.MaxAuditRange + 1}, {int64(n - 2), 5}, {int64(n), 1}} {
		got, err := st.Range(ctx, "long", tc.start, tc.n)
		want, _ := ms.Range(ctx, "long", tc.start, tc.n)
		if err != nil || len(got) != len(want) {
			t.Fatalf("Range(%d, %d): %d records, %v; want %d", tc.start, tc.n, len(got), err, len(want))
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("Range(%d, %d) differs from the store's", tc.start, tc.n)
		}
	}
	cps, err := st.Checkpoints(ctx, "long")
	wantCPs, _ := ms.Checkpoints(ctx, "long")
	if err != nil || !slices.EqualFunc(cps, wantCPs, bytes.Equal) {
		t.Fatalf("Checkpoints over two pages: %d (want %d), %v", len(cps), len(wantCPs), err)
	}
	if err := st.Append(ctx, "long", []byte("x")); !errors.Is(err, errAuditReadOnly) {
		t.Fatalf("Append: %v, want read-only", err)
	}
	if err := st.Checkpoint(ctx, "long", []byte("x")); !errors.Is(err, errAuditReadOnly) {
		t.Fatalf("Checkpoint: %v, want read-only", err)
	}
	if l, _ := ms.Len(ctx, "long"); l != int64(n) {
		t.Fatalf("a refused write landed: len %d", l)
	}
	if _, err := st.Range(ctx, "Bad/Chain", 0, 1); err == nil || !strings.Contains(err.Error(), "not a chain id") {
		t.Fatalf("Range of a bad chain id: %v", err)
	}
}

// TestAuditCLIAdminURL: `broker audit verify --admin-url` verifies a chain
// served by an admin listener with the operator's keys; after the chain is
// tampered with behind the listener it exits 1 naming the first bad seq;
// `tail --admin-url` prints the records.
func TestAuditCLIAdminURL(t *testing.T) {
	t.Parallel()
	keys := testKeysDir(t)
	ms := audit.NewMemStore()
	chain := writeAuditChain(t, ms, keys, 10)
	tokenFile := writeFile(t, cliAdminToken+"\n")
	url := auditAdmin(t, ms)
	env := map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_DATA_DIR": filepath.Join(t.TempDir(), "none")}
	conn := []string{"--admin-url", url, "--admin-token-file", tokenFile}

	code, out, errOut := runAudit(t, env, append([]string{"verify"}, conn...)...)
	if code != 0 || !strings.Contains(out, "1 chains, 10 records: intact") || !strings.Contains(out, "last checkpoint seq 10") {
		t.Fatalf("verify intact: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAudit(t, env, append([]string{"tail", "-n", "3"}, conn...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[0], "chain="+chain+" seq=8 kind=call") || !strings.Contains(lines[2], "seq=10 kind=call") {
		t.Fatalf("tail -n 3: exit %d, %q", code, out)
	}

	// Another broker's keys: the listener's answer is the same, the
	// verdict (made here) is not.
	other := map[string]string{"SEALRELAY_KEYS_DIR": testKeysDir(t), "SEALRELAY_DATA_DIR": env["SEALRELAY_DATA_DIR"]}
	if code, out, _ := runAudit(t, other, append([]string{"verify"}, conn...)...); code != 1 || !strings.Contains(out, "BAD at seq 1 (edited") {
		t.Fatalf("verify with another broker's keys: exit %d, %q", code, out)
	}

	// Swap records 6 and 7 (indexes 5, 6) behind the listener.
	ms.Mutate(chain, func(recs, cps [][]byte) ([][]byte, [][]byte) {
		recs[5], recs[6] = recs[6], recs[5]
		return recs, cps
	})
	code, out, errOut = runAudit(t, env, append([]string{"verify"}, conn...)...)
	if code != 1 || !strings.Contains(out, "BAD at seq 6") || !strings.Contains(errOut, "chain "+chain+": seq 6 ") {
		t.Fatalf("verify tampered: exit %d, out %q, err %q", code, out, errOut)
	}
}

// TestAuditCLIAdminErrors: each way reading through the listener can fail
// names its cause, and never prints the token.
func TestAuditCLIAdminErrors(t *testing.T) {
	t.Parallel()
	keys := testKeysDir(t)
	tokenFile := writeFile(t, cliAdminToken+"\n")
	wrongToken := writeFile(t, "not-the-admin-token\n")
	on := auditAdmin(t, audit.NewMemStore())
	off := auditAdmin(t, nil)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	env := map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_DATA_DIR": filepath.Join(t.TempDir(), "none")}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"unreachable", []string{"verify", "--admin-url", closedURL, "--admin-token-file", tokenFile}, 1, "admin listener not reachable at " + closedURL},
		{"401", []string{"tail", "--admin-url", on, "--admin-token-file", wrongToken}, 1, "refused the token (401 invalid admin token)"},
		{"audit off", []string{"verify", "--admin-url", off, "--admin-token-file", tokenFile}, 1, "audit log is off on the broker: the broker at " + off},
		{"no token", []string{"verify", "--admin-url", on}, 2, "no admin token"},
		{"bad url", []string{"verify", "--admin-url", "ftp://x", "--admin-token-file", tokenFile}, 2, "is not http://HOST:PORT"},
		{"redis and listener", []string{"verify", "--admin-url", on, "--redis-url", "redis://127.0.0.1:1/0", "--admin-token-file", tokenFile}, 2, "give one of them"},
		{"not the listener", []string{"verify", "--admin-url", "http://" + notJSON(t), "--admin-token-file", tokenFile}, 1, "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runAudit(t, env, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q, want %d saying %q (stdout %q)", code, errOut, tt.code, tt.wantErr, out)
			}
			if strings.Contains(errOut+out, cliAdminToken) {
				t.Fatal("the output holds the admin token")
			}
		})
	}
}

// TestServeAuditThroughAdminListener runs an embedded `broker serve` (its
// state.db locked) with the admin listener on, drives the e2e flow, and
// reads the audit log while the broker runs: with --admin-url, and without
// it through the fallback to the listener when the file is locked.
func TestServeAuditThroughAdminListener(t *testing.T) {
	// Not parallel: it points auditAdminURL at this broker's listener.
	fake, fs := newE2EFake(t)
	env := dropEmpty(e2eEnv(t, fs))
	tokenFile := writeFile(t, cliAdminToken+"\n")
	r := startServe(t, []string{"--admin-listen", "127.0.0.1:0", "--admin-token-file", tokenFile}, env)
	e2eFlow(t, fake, r)
	url := "http://" + r.addrs.Admin.String()

	code, out, errOut := runAudit(t, env, "verify", "--admin-url", url, "--admin-token-file", tokenFile)
	if code != 0 || !strings.Contains(out, "1 chains, ") || !strings.Contains(out, ": intact") {
		t.Fatalf("verify --admin-url on the running broker: exit %d, out %q, err %q", code, out, errOut)
	}
	// The page's verify (on the server, with the keys serve passes) agrees
	// with the client-side one.
	var cliRecords int
	if _, err := fmt.Sscanf(out[strings.LastIndex(out, "\n1 chains, ")+1:], "1 chains, %d records", &cliRecords); err != nil || cliRecords == 0 {
		t.Fatalf("verify output %q: %v", out, err)
	}
	req, _ := http.NewRequest("POST", url+"/admin/api/audit/verify", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+cliAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ans broker.AuditVerifyAnswer
	err = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !ans.Intact || ans.ChainCount != 1 || ans.RecordCount != int64(cliRecords) {
		t.Fatalf("POST /admin/api/audit/verify: %d %+v (%v), want intact, 1 chain, %d records", resp.StatusCode, ans, err, cliRecords)
	}
	code, out, _ = runAudit(t, env, "tail", "-n", "100", "--admin-url", url, "--admin-token-file", tokenFile)
	for _, want := range []string{"kind=install", "kind=register", "kind=send phase=intent", "kind=send phase=result"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("tail --admin-url: exit %d, lacks %q:\n%s", code, want, out)
		}
	}

	// No --admin-url: state.db is locked, so the command says so, and with
	// a token it reads through the (default) listener instead.
	code, _, errOut = runAudit(t, env, "verify")
	if code != 1 || !strings.Contains(errOut, "in use by another process (a running `broker serve`?)") || !strings.Contains(errOut, "--admin-token-file") {
		t.Fatalf("verify on the locked store without a token: exit %d, %q", code, errOut)
	}
	saved := auditAdminURL
	t.Cleanup(func() { auditAdminURL = saved })
	env["SEALRELAY_ADMIN_TOKEN_FILE"] = tokenFile
	closed := httptest.NewServer(http.NotFoundHandler())
	auditAdminURL = closed.URL
	closed.Close()
	code, _, errOut = runAudit(t, env, "verify")
	if code != 1 || !strings.Contains(errOut, "in use by another process (a running `broker serve`?)") || !strings.Contains(errOut, "admin listener not reachable at "+auditAdminURL) {
		t.Fatalf("verify on the locked store, listener down: exit %d, %q", code, errOut)
	}
	auditAdminURL = url
	code, out, errOut = runAudit(t, env, "verify")
	if code != 0 || !strings.Contains(out, ": intact") {
		t.Fatalf("verify falling back to the listener: exit %d, out %q, err %q", code, out, errOut)
	}
	r.stop(t)
	if strings.Contains(r.logs.String(), cliAdminToken) {
		t.Fatal("the admin token is in the broker's log")
	}
}

// BenchmarkAuditVerify verifies a 10 000-record chain read from the store
// directly and through the admin listener (loopback HTTP, pages of
// broker.MaxAuditRange).
func BenchmarkAuditVerify(b *testing.B) {
	keysDir := filepath.Join(b.TempDir(), "keys")
	var out, errb bytes.Buffer
	if err := cmdInit([]string{"--dir", keysDir}, envMap(nil), &out, &errb); err != nil {
		b.Fatal(err)
	}
	sk, err := crypto.ParseSigningKey(strings.TrimSpace(string(must(os.ReadFile(filepath.Join(keysDir, signingKeyFile))))))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		b.Fatal(err)
	}
	ms := audit.NewMemStore()
	l, err := audit.NewLog(ms, keys, audit.Options{CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	for range n {
		if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindCall, Org: "T1", Agent: "ag-1", Method: "chat.postMessage", Channel: "C1"}); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	h, err := newHTTPAdmin(auditAdmin(b, ms), cliAdminToken)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, bc := range []struct {
		name string
		st   audit.Store
	}{{"direct", ms}, {"admin-listener", httpAuditStore{h}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := audit.Verify(context.Background(), bc.st, keys)
				if err != nil || !rep.OK() || rep.Records() != n {
					b.Fatalf("verify: %v %v", rep, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

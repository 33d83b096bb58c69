package broker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// testAuditKeys derives audit keys from a fresh signing key.
func testAuditKeys(t testing.TB) *audit.Keys {
	t.Helper()
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// writeKeyedChain writes n records (a checkpoint every 3) with keys and
// closes the chain (a final checkpoint); it returns the chain id.
func writeKeyedChain(t testing.TB, st audit.Store, keys *audit.Keys, n int) string {
	t.Helper()
	return writeKeyedChainEvery(t, st, keys, n, 3)
}

// writeKeyedChainEvery is writeKeyedChain with a checkpoint every
// cpEvery records.
func writeKeyedChainEvery(t testing.TB, st audit.Store, keys *audit.Keys, n, cpEvery int) string {
	t.Helper()
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: cpEvery, CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindCall, Org: "T1", Agent: "ag-1", Method: "chat.postMessage", BytesIn: int64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l.Chain()
}

// newVerifyAdmin serves the admin API with st and keys (either nil: the
// verify route is off).
func newVerifyAdmin(t *testing.T, st audit.Store, keys *audit.Keys) *adminHTTP {
	t.Helper()
	e := adminEngines[1].open(t, queue.Options{})
	adm, err := NewAdmin(e.st, e.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: testAdminToken, AuditStore: st, AuditKeys: keys,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}))
	t.Cleanup(srv.Close)
	return &adminHTTP{url: srv.URL, env: e, logs: logs}
}

// postVerify POSTs body to the verify route and decodes the answer.
func (a *adminHTTP) postVerify(t *testing.T, body string) (int, AuditVerifyAnswer) {
	t.Helper()
	req, err := http.NewRequest("POST", a.url+"/admin/api/audit/verify", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans AuditVerifyAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		t.Fatalf("verify: %d %q is not JSON", resp.StatusCode, b)
	}
	return resp.StatusCode, ans
}

// TestAdminAuditVerifyIntact: two closed chains (on Redis and on a
// MemStore) verify on the server with the broker's keys: intact, every
// chain and record counted, each chain's last checkpoint reported; no body
// and {} are both accepted.
func TestAdminAuditVerifyIntact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		open func(t *testing.T) audit.Store
	}{
		{"redis", func(t *testing.T) audit.Store {
			rdb, prefix := testRedis(t)
			return redisstore.NewAuditStore(rdb, prefix)
		}},
		{"mem", func(*testing.T) audit.Store { return audit.NewMemStore() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := tc.open(t)
			keys := testAuditKeys(t)
			lens := map[string]int64{writeKeyedChain(t, st, keys, 7): 7, writeKeyedChain(t, st, keys, 2): 2}
			a := newVerifyAdmin(t, st, keys)
			for _, body := range []string{"", "{}", " { } \n"} {
				code, ans := a.postVerify(t, body)
				if code != 200 || !ans.OK || !ans.Intact || ans.ChainCount != 2 || ans.RecordCount != 9 || len(ans.Problems) != 0 || len(ans.Chains) != 2 {
					t.Fatalf("body %q: %d %+v", body, code, ans)
				}
				for _, c := range ans.Chains {
					if c.Records != lens[c.Chain] || c.Verified != uint64(lens[c.Chain]) || c.Problem != nil {
						t.Fatalf("chain %+v, want %d records verified", c, lens[c.Chain])
					}
					if c.LastCheckpoint == nil || c.LastCheckpoint.Seq != uint64(lens[c.Chain]) || c.LastCheckpoint.Chain != c.Chain {
						t.Fatalf("chain %s: last checkpoint %+v, want seq %d (the closing one)", c.Chain, c.LastCheckpoint, lens[c.Chain])
					}
				}
			}
			if strings.Contains(a.logs.String(), "audit log broken") {
				t.Fatalf("an intact log was logged as broken:\n%s", a.logs.String())
			}
		})
	}
}

// TestAdminAuditVerifyTampered: an edited, a removed and a truncated record
// of a MemStore chain, and a chain written with another broker's keys, are
// each reported with the chain, the first bad seq and the reason (and
// logged by name, never with the record).
func TestAdminAuditVerifyTampered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(recs, cps [][]byte) ([][]byte, [][]byte)
		seq    uint64
		reason audit.Reason
	}{
		{"edited", func(recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[4] = append(append([]byte{}, recs[4][:len(recs[4])-1]...), recs[4][len(recs[4])-1]^1)
			return recs, cps
		}, 5, audit.ReasonEdited},
		{"removed", func(recs, cps [][]byte) ([][]byte, [][]byte) {
			return append(recs[:2:2], recs[3:]...), cps
		}, 3, audit.ReasonRemoved},
		{"reordered", func(recs, cps [][]byte) ([][]byte, [][]byte) {
			recs[1], recs[2] = recs[2], recs[1]
			return recs, cps
		}, 2, audit.ReasonReordered},
		{"truncated", func(recs, cps [][]byte) ([][]byte, [][]byte) {
			return recs[:5], cps
		}, 6, audit.ReasonTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := audit.NewMemStore()
			keys := testAuditKeys(t)
			bad := writeKeyedChain(t, st, keys, 7)
			good := writeKeyedChain(t, st, keys, 2)
			st.Mutate(bad, tt.mutate)
			a := newVerifyAdmin(t, st, keys)
			code, ans := a.postVerify(t, "{}")
			if code != 200 || !ans.OK || ans.Intact || ans.ChainCount != 2 || len(ans.Problems) != 1 {
				t.Fatalf("%d %+v, want one broken chain", code, ans)
			}
			p := ans.Problems[0]
			if p.Chain != bad || p.Seq != tt.seq || p.Reason != tt.reason || p.Detail == "" {
				t.Fatalf("problem %+v, want chain %s seq %d %s", p, bad, tt.seq, tt.reason)
			}
			for _, c := range ans.Chains {
				if (c.Chain == bad) != (c.Problem != nil) {
					t.Fatalf("chain %s (bad %s, good %s): problem %+v", c.Chain, bad, good, c.Problem)
				}
			}
			logs := a.logs.String()
			if !strings.Contains(logs, `"msg":"audit log broken"`) || !strings.Contains(logs, `"chain":"`+bad+`"`) || !strings.Contains(logs, `"reason":"`+string(tt.reason)+`"`) {
				t.Fatalf("broken chain not logged by name:\n%s", logs)
			}
		})
	}
	t.Run("other broker's keys", func(t *testing.T) {
		t.Parallel()
		st := audit.NewMemStore()
		chain := writeKeyedChain(t, st, testAuditKeys(t), 3)
		code, ans := newVerifyAdmin(t, st, testAuditKeys(t)).postVerify(t, "")
		if code != 200 || ans.Intact || len(ans.Problems) != 1 || ans.Problems[0].Chain != chain || ans.Problems[0].Seq != 1 {
			t.Fatalf("%d %+v, want chain %s broken at seq 1", code, ans, chain)
		}
	})
	t.Run("empty log", func(t *testing.T) {
		t.Parallel()
		code, ans := newVerifyAdmin(t, audit.NewMemStore(), testAuditKeys(t)).postVerify(t, "")
		if code != 200 || !ans.Intact || ans.ChainCount != 0 || ans.RecordCount != 0 || ans.Chains == nil || ans.Problems == nil {
			t.Fatalf("%d %+v, want intact with 0 chains (as lists, not null)", code, ans)
		}
	})
}

// TestAdminAuditVerifyErrors: auth, the POST checks, the body, audit off
// and a store that does not answer.
func TestAdminAuditVerifyErrors(t *testing.T) {
	t.Parallel()
	st := audit.NewMemStore()
	keys := testAuditKeys(t)
	writeKeyedChain(t, st, keys, 2)
	on := newVerifyAdmin(t, st, keys)
	noStore := newVerifyAdmin(t, nil, keys)
	noKeys := newVerifyAdmin(t, st, nil)
	broken := newVerifyAdmin(t, failingAuditStore{audit.NewMemStore()}, keys)
	const path = "/admin/api/audit/verify"
	tests := []struct {
		name    string
		a       *adminHTTP
		method  string
		token   string
		body    string
		hdr     map[string]string
		want    int
		errPart string
	}{
		{"no token", on, "POST", "-", "{}", nil, 401, "missing admin token"},
		{"wrong token", on, "POST", "wrong-token", "{}", nil, 401, "invalid admin token"},
		{"GET", on, "GET", "", "", nil, 404, "no admin API route GET /admin/api/audit/verify"},
		{"cross origin", on, "POST", "", "{}", map[string]string{"Origin": "https://evil.example"}, 403, "cross-origin request refused"},
		{"form post", on, "POST", "", "{}", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "Content-Type must be application/json"},
		{"argument", on, "POST", "", `{"chain":"x"}`, nil, 400, "unknown field"},
		{"array", on, "POST", "", `[]`, nil, 400, "this action takes no arguments"},
		{"two objects", on, "POST", "", `{}{}`, nil, 400, "more than one value"},
		{"syntax", on, "POST", "", `{`, nil, 400, "invalid JSON body"},
		{"too big", on, "POST", "", "{" + strings.Repeat(" ", maxAdminBody) + "}", nil, 413, "request body over"},
		{"audit off: no store", noStore, "POST", "", "{}", nil, 404, ErrAuditOff},
		{"audit off: no keys", noKeys, "POST", "", "", nil, 404, ErrAuditOff},
		{"store down", broken, "POST", "", "{}", nil, 503, "store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok := tt.token
			switch tok {
			case "":
				tok = testAdminToken
			case "-":
				tok = ""
			}
			status, hdr, body := tt.a.do(t, tt.method, path, tok, tt.body, tt.hdr)
			e, _ := body["error"].(string)
			if status != tt.want || !strings.Contains(e, tt.errPart) {
				t.Fatalf("%d %q, want %d saying %q", status, e, tt.want, tt.errPart)
			}
			if _, ok := body["intact"]; ok {
				t.Fatalf("a refused request carries a verdict: %v", body)
			}
			if status == 401 && hdr.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if strings.Contains(e, errAuditDisk.Error()) {
				t.Fatalf("the answer leaks the internal error: %q", e)
			}
		})
	}
}

// BenchmarkAdminAuditVerify measures POST /admin/api/audit/verify over one
// closed chain of 10,000 records (a checkpoint every 100, serve's cadence)
// in a MemStore and on Redis: the server-side verify of the admin page,
// request to decoded answer.
func BenchmarkAdminAuditVerify(b *testing.B) {
	const n = 10000
	for _, tc := range []struct {
		name string
		open func(b *testing.B) audit.Store
	}{
		{"mem", func(*testing.B) audit.Store { return audit.NewMemStore() }},
		{"redis", func(b *testing.B) audit.Store {
			rdb, prefix := testRedis(b)
			return redisstore.NewAuditStore(rdb, prefix)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st := tc.open(b)
			keys := testAuditKeys(b)
			writeKeyedChainEvery(b, st, keys, n, 100)
			e := adminEngines[1].open(b, queue.Options{})
			adm, err := NewAdmin(e.st, e.q, AdminOptions{})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: testAdminToken, AuditStore: st, AuditKeys: keys,
				Logger: slog.New(slog.DiscardHandler)}))
			defer srv.Close()
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest("POST", srv.URL+"/admin/api/audit/verify", strings.NewReader("{}"))
				req.Header.Set("Authorization", "Bearer "+testAdminToken)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var ans AuditVerifyAnswer
				err = json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if err != nil || !ans.Intact || ans.RecordCount != n {
					b.Fatalf("%+v %v", ans, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
		})
	}
}

// stuckAuditStore's Len waits for its context to end.
type stuckAuditStore struct{ *audit.MemStore }

func (stuckAuditStore) Len(ctx context.Context, _ string) (int64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestAdminAuditVerifyTimeout: a verify that cannot finish within its bound
// is a 503 that says so and points at `broker audit verify`, not a generic
// store failure.
func TestAdminAuditVerifyTimeout(t *testing.T) {
	t.Parallel()
	st := audit.NewMemStore()
	keys := testAuditKeys(t)
	writeKeyedChain(t, st, keys, 2)
	e := adminEngines[1].open(t, queue.Options{})
	adm, err := NewAdmin(e.st, e.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: testAdminToken, AuditStore: stuckAuditStore{st}, AuditKeys: keys,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), verifyTimeout: 50 * time.Millisecond}))
	t.Cleanup(srv.Close)
	a := &adminHTTP{url: srv.URL, env: e, logs: logs}
	status, _, body := a.do(t, "POST", "/admin/api/audit/verify", testAdminToken, "{}", nil)
	if e, _ := body["error"].(string); status != 503 || !strings.Contains(e, "did not finish within 50ms") || !strings.Contains(e, "broker audit verify") {
		t.Fatalf("%d %q, want 503 naming the bound and the CLI", status, e)
	}
	if !strings.Contains(logs.String(), "audit verify timed out") {
		t.Fatalf("timeout not logged:\n%s", logs.String())
	}
}

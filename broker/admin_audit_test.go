package broker

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
	"slices"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// newAuditAdmin serves the admin API over st (nil: audit off).
func newAuditAdmin(t *testing.T, st audit.Store) *adminHTTP {
	t.Helper()
	e := adminEngines[1].open(t, queue.Options{})
	adm, err := NewAdmin(e.st, e.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: testAdminToken, AuditStore: st,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}))
	t.Cleanup(srv.Close)
	return &adminHTTP{url: srv.URL, env: e, logs: logs}
}

// writeTestChain writes n records (a checkpoint every 3) to st and closes
// the chain; it returns the chain id.
func writeTestChain(t testing.TB, st audit.Store, n int) string {
	t.Helper()
	sk, err := crypto.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: 3, CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler)})
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

// getRaw GETs path with the admin token and decodes the JSON answer into out.
func (a *adminHTTP) getRaw(t *testing.T, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest("GET", a.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %d %q is not JSON", path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

type rawRecords struct {
	Chain   string   `json:"chain"`
	Len     int64    `json:"len"`
	Start   int64    `json:"start"`
	Records [][]byte `json:"records"`
}

// TestAdminAuditAPIServesStoredBytes: on the Redis engine and on a MemStore
// (with a record replaced by junk that does not decode), the raw routes
// return every chain, the records page by page and the checkpoints byte for
// byte as the store holds them.
func TestAdminAuditAPIServesStoredBytes(t *testing.T) {
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
			ctx := context.Background()
			chains := []string{writeTestChain(t, st, 7), writeTestChain(t, st, 2)}
			if ms, ok := st.(*audit.MemStore); ok {
				ms.Mutate(chains[0], func(recs, cps [][]byte) ([][]byte, [][]byte) {
					recs[4] = []byte("not a record \x00\xff")
					return recs, cps
				})
			}
			slices.Sort(chains)
			a := newAuditAdmin(t, st)

			var list struct {
				Chains []string `json:"chains"`
			}
			if code := a.getRaw(t, "/admin/api/audit/chains", &list); code != 200 || !slices.Equal(list.Chains, chains) {
				t.Fatalf("chains: %d %v, want %v", code, list.Chains, chains)
			}
			for _, chain := range chains {
				want, err := st.Range(ctx, chain, 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				var got [][]byte
				for start := 0; ; start += 3 {
					var page rawRecords
					if code := a.getRaw(t, fmt.Sprintf("/admin/api/audit/chains/%s/records?start=%d&n=3", chain, start), &page); code != 200 {
						t.Fatalf("records at %d: %d", start, code)
					}
					if page.Chain != chain || page.Len != int64(len(want)) || page.Start != int64(start) || page.Records == nil {
						t.Fatalf("records at %d: %+v, want len %d", start, page, len(want))
					}
					if len(page.Records) == 0 {
						break
					}
					got = append(got, page.Records...)
				}
				if !slices.EqualFunc(got, want, bytes.Equal) {
					t.Fatalf("chain %s: served records differ from the store's", chain)
				}
				var all rawRecords // default n: everything up to MaxAuditRange
				if a.getRaw(t, "/admin/api/audit/chains/"+chain+"/records", &all); !slices.EqualFunc(all.Records, want, bytes.Equal) {
					t.Fatalf("chain %s: default page differs", chain)
				}
				var lenOnly rawRecords
				if a.getRaw(t, "/admin/api/audit/chains/"+chain+"/records?n=0", &lenOnly); lenOnly.Len != int64(len(want)) || len(lenOnly.Records) != 0 {
					t.Fatalf("n=0: %+v", lenOnly)
				}
				wantCPs, err := st.Checkpoints(ctx, chain)
				if err != nil || len(wantCPs) == 0 {
					t.Fatalf("store checkpoints: %d %v", len(wantCPs), err)
				}
				var gotCPs [][]byte
				for start := 0; ; start++ {
					var page struct {
						Chain       string   `json:"chain"`
						Len         int64    `json:"len"`
						Checkpoints [][]byte `json:"checkpoints"`
					}
					if code := a.getRaw(t, fmt.Sprintf("/admin/api/audit/chains/%s/checkpoints?start=%d&n=1", chain, start), &page); code != 200 || page.Chain != chain || page.Len != int64(len(wantCPs)) || page.Checkpoints == nil {
						t.Fatalf("checkpoints at %d: %d %+v", start, code, page)
					}
					if len(page.Checkpoints) == 0 {
						break
					}
					gotCPs = append(gotCPs, page.Checkpoints...)
				}
				if !slices.EqualFunc(gotCPs, wantCPs, bytes.Equal) {
					t.Fatalf("chain %s: served checkpoints differ from the store's", chain)
				}
			}
			// A valid id the store does not know is an empty chain, as in audit.Store.
			var none rawRecords
			if code := a.getRaw(t, "/admin/api/audit/chains/no-such-chain/records", &none); code != 200 || none.Len != 0 || none.Records == nil || len(none.Records) != 0 {
				t.Fatalf("unknown chain: %d %+v", code, none)
			}
		})
	}
}

// failingAuditStore fails every read.
type failingAuditStore struct{ *audit.MemStore }

var errAuditDisk = errors.New("audit disk on fire")

func (failingAuditStore) Chains(context.Context) ([]string, error)   { return nil, errAuditDisk }
func (failingAuditStore) Len(context.Context, string) (int64, error) { return 0, errAuditDisk }
func (failingAuditStore) Checkpoints(context.Context, string) ([][]byte, error) {
	return nil, errAuditDisk
}

func TestAdminAuditAPIErrors(t *testing.T) {
	t.Parallel()
	st := audit.NewMemStore()
	chain := writeTestChain(t, st, 2)
	on := newAuditAdmin(t, st)
	off := newAuditAdmin(t, nil)
	broken := newAuditAdmin(t, failingAuditStore{audit.NewMemStore()})
	rec := "/admin/api/audit/chains/" + chain + "/records"
	tests := []struct {
		name    string
		a       *adminHTTP
		path    string
		token   string
		want    int
		errPart string
	}{
		{"no token", on, "/admin/api/audit/chains", "-", 401, "missing admin token"},
		{"wrong token", on, rec, "wrong-token", 401, "invalid admin token"},
		{"wrong token checkpoints", on, "/admin/api/audit/chains/" + chain + "/checkpoints", "wrong-token", 401, "invalid admin token"},
		{"upper-case chain", on, "/admin/api/audit/chains/ABC/records", "", 400, "invalid chain id"},
		{"leading dash", on, "/admin/api/audit/chains/-abc/checkpoints", "", 400, "invalid chain id"},
		{"dot in chain", on, "/admin/api/audit/chains/a.b/records", "", 400, "invalid chain id"},
		{"escaped slash", on, "/admin/api/audit/chains/a%2Fb/records", "", 400, "invalid chain id"},
		{"chain too long", on, "/admin/api/audit/chains/" + strings.Repeat("a", 65) + "/records", "", 400, "invalid chain id"},
		{"negative start", on, rec + "?start=-1", "", 400, "invalid start"},
		{"start text", on, rec + "?start=x", "", 400, "invalid start"},
		{"start overflow", on, rec + "?start=99999999999999999999", "", 400, "invalid start"},
		{"negative n", on, rec + "?n=-1", "", 400, "invalid n: want 0 to 1000"},
		{"n too big", on, rec + "?n=1001", "", 400, "invalid n: want 0 to 1000"},
		{"n text", on, rec + "?n=all", "", 400, "invalid n"},
		{"checkpoints n too big", on, "/admin/api/audit/chains/" + chain + "/checkpoints?n=10001", "", 400, "invalid n: want 0 to 10000"},
		{"checkpoints negative start", on, "/admin/api/audit/chains/" + chain + "/checkpoints?start=-5", "", 400, "invalid start"},
		{"no route", on, "/admin/api/audit/chains/" + chain, "", 404, "no admin API route"},
		{"audit off: chains", off, "/admin/api/audit/chains", "", 404, ErrAuditOff},
		{"audit off: records", off, rec, "", 404, ErrAuditOff},
		{"audit off: checkpoints", off, "/admin/api/audit/chains/" + chain + "/checkpoints", "", 404, ErrAuditOff},
		{"store down: chains", broken, "/admin/api/audit/chains", "", 503, "store unavailable"},
		{"store down: records", broken, rec, "", 503, "store unavailable"},
		{"store down: checkpoints", broken, "/admin/api/audit/chains/" + chain + "/checkpoints", "", 503, "store unavailable"},
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
			status, _, body := tt.a.do(t, "GET", tt.path, tok, "", nil)
			e, _ := body["error"].(string)
			if status != tt.want || !strings.Contains(e, tt.errPart) {
				t.Fatalf("%d %q, want %d saying %q", status, e, tt.want, tt.errPart)
			}
			if strings.Contains(e, errAuditDisk.Error()) {
				t.Fatalf("the answer leaks the internal error: %q", e)
			}
		})
	}
}

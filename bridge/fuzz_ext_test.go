package bridge_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// FuzzLocalAPI feeds arbitrary bodies to every POST endpoint. The broker is
// down, so a body that passes validation answers 502; anything else must be
// a 400/413 with a JSON error, never a panic or a 5xx of our own.
func FuzzLocalAPI(f *testing.F) {
	for _, s := range []string{
		`{"channel":"C1","text":"hi"}`, `{"thread_id":"C1:1.2","text":"x"}`, `{"channel":"C1","timestamp":"1.2","emoji":"+1"}`,
		`{"channel":"C1","timestamp":"1.2","text":"x","blocks":[{}]}`, `{"channel":null}`, `[]`, `{"text":"\u0000"}`, `{`,
	} {
		f.Add(uint8(0), s)
	}
	fb := bridgetest.New(f, testOrg)
	id := newIdentity(f, fb)
	fb.Close()
	ln := apiListener(f)
	cfg := baseConfig(f, id, f.TempDir())
	cfg.Stream = true
	cfg.ListenAddr = ln.Addr().String()
	ln.Close()
	b, err := bridge.New(cfg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	h := b.Handler()
	paths := []string{"/send", "/reply", "/react", "/update"}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		req := httptest.NewRequest(http.MethodPost, "http://"+cfg.ListenAddr+paths[int(which)%len(paths)], strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 400, 413, 502:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
		}
		if !strings.Contains(rec.Body.String(), `"ok":false`) {
			t.Fatalf("no JSON error: %s", rec.Body.String())
		}
	})
}

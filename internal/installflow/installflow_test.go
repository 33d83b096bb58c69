package installflow_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/installflow"
)

// TestInstall follows the install redirect, keeps the state cookie across
// it and reads the register command off the (HTML-escaped) callback page;
// a page without one, or an error status, is an error.
func TestInstall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  int
		page    string
		want    installflow.Result
		wantErr string
	}{
		{name: "ok", status: 200,
			page: `<pre>bridge register --broker-url http://127.0.0.1:1 --org-id T0ABC --registration-token abc_DEF-1</pre>`,
			want: installflow.Result{BrokerURL: "http://127.0.0.1:1", OrgID: "T0ABC", RegistrationToken: "abc_DEF-1"}},
		{name: "escaped", status: 200,
			page: `bridge&#32;register --broker-url https://r.example --org-id E0X --registration-token tok`,
			want: installflow.Result{BrokerURL: "https://r.example", OrgID: "E0X", RegistrationToken: "tok"}},
		{name: "no command", status: 200, page: "<p>installed</p>", wantErr: "no registration command"},
		{name: "error status", status: 400, page: "state mismatch", wantErr: "400 Bad Request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			mux.HandleFunc("GET /slack/install", func(w http.ResponseWriter, r *http.Request) {
				http.SetCookie(w, &http.Cookie{Name: "st", Value: "s1", Path: "/"})
				http.Redirect(w, r, "/consent", http.StatusFound)
			})
			mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/slack/oauth/callback", http.StatusFound)
			})
			mux.HandleFunc("GET /slack/oauth/callback", func(w http.ResponseWriter, r *http.Request) {
				if c, err := r.Cookie("st"); err != nil || c.Value != "s1" {
					http.Error(w, "no state cookie", http.StatusBadRequest)
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.page))
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			got, err := installflow.Install(context.Background(), srv.Client(), srv.URL)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Install: err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Install = %+v, want %+v", got, tc.want)
			}
		})
	}
}

package broker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestAdminMintTokenBrokerURL: the mint answer names the public URL a
// bridge registers at when the handler knows it (the page shows the whole
// `bridge register` command), leaves it out when not, and is never cached.
func TestAdminMintTokenBrokerURL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org, _ := h.install(slackfake.Install{TeamID: "T0MNT0001"})
	adm, err := h.srv.Admin(AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const admTok = "admin-token-0123456789abcdef0123"
	for _, tt := range []struct{ name, publicURL string }{{"known", "https://broker.example"}, {"unknown", ""}} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(NewAdminHandler(adm, AdminHandlerOptions{Token: admTok, PublicURL: tt.publicURL}))
			defer srv.Close()
			status, hdr, body := do(t, http.MethodPost, srv.URL+"/admin/api/orgs/"+org+"/registration-tokens", admTok,
				[]byte(`{"mode":"replace","confirm":"`+org+`"}`), nil)
			var ans struct {
				RegistrationToken MintedToken `json:"registration_token"`
				BrokerURL         *string     `json:"broker_url"`
			}
			if err := json.Unmarshal(body, &ans); err != nil || status != 200 {
				t.Fatalf("%d %s (%v)", status, body, err)
			}
			if ans.RegistrationToken.Token == "" || ans.RegistrationToken.Mode != "replace" || ans.RegistrationToken.OrgID != org {
				t.Fatalf("token %+v", ans.RegistrationToken)
			}
			if tt.publicURL == "" && ans.BrokerURL != nil || tt.publicURL != "" && (ans.BrokerURL == nil || *ans.BrokerURL != tt.publicURL) {
				t.Fatalf("broker_url %v, want %q", ans.BrokerURL, tt.publicURL)
			}
			if hdr.Get("Cache-Control") != "no-store" {
				t.Fatalf("Cache-Control %q", hdr.Get("Cache-Control"))
			}
		})
	}
}

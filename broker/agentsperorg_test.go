package broker

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// TestAgentsPerOrgAcrossReplicas: with AgentsPerOrg 1 a second
// registration of the workspace — on another replica, with a fresh token —
// is answered 409 "workspace already active" and loses nothing (the token
// works once the first agent unregisters); unlimited (0) admits both.
func TestAgentsPerOrgAcrossReplicas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		limit      int
		wantSecond int
	}{
		{"unlimited", 0, http.StatusOK},
		{"one", 1, http.StatusConflict},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withConfig(func(c *Config) { c.AgentsPerOrg = tt.limit }))
			_, _, _, _, url2 := h.newReplica()
			org, tok := h.install(slackfake.Install{TeamID: []string{"T0APO001", "T0APO002"}[i]})
			first := h.register(org, tok)
			tok2 := h.freshRegToken(org)
			second := h.newAgentKeys(org)
			second.base = url2
			status, body := second.tryRegister(tok2)
			if status != tt.wantSecond {
				t.Fatalf("second registration on replica 2: %d %s, want %d", status, body, tt.wantSecond)
			}
			if status == http.StatusOK {
				return
			}
			if e := errorText(t, body); !strings.Contains(e, "workspace already active") {
				t.Fatalf("error %q lacks %q", e, "workspace already active")
			}
			st, _, b := do(t, http.MethodDelete, h.url+"/api/register", first.token, first.unregisterBody(first.now()), nil)
			if st != http.StatusOK {
				t.Fatalf("unregister: %d %s", st, b)
			}
			if status, body := second.tryRegister(tok2); status != http.StatusOK {
				t.Fatalf("registration after unregister (token must be kept): %d %s", status, body)
			}
		})
	}
}

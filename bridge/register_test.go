package bridge_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/protocol"
)

func TestRegisterWritesBaudbotCompatibleFile(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	path := filepath.Join(t.TempDir(), "sub", "bridge.env")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	existing := "# my settings\nexport OTHER_VAR=\"keep me\"\nSLACK_BROKER_ACCESS_TOKEN=old\nUNRELATED=1\n"
	if err := os.WriteFile(path, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := bridge.Register(t.Context(), bridge.RegisterOptions{
		BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o, want 600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	text := string(data)
	for _, want := range []string{"# my settings\n", "export OTHER_VAR=\"keep me\"\n", "UNRELATED=1\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("unknown line %q not kept:\n%s", want, text)
		}
	}
	if strings.Contains(text, "=old") {
		t.Error("old access token kept")
	}
	f, err := bridge.ParseEnvFile(data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		bridge.EnvBrokerURL:           fb.URL(),
		bridge.EnvOrgID:               testOrg,
		bridge.EnvWorkspaceID:         testOrg,
		bridge.EnvServerPrivateKey:    id.BoxKey.PrivateString(),
		bridge.EnvServerPublicKey:     id.BoxKey.Public.String(),
		bridge.EnvServerSigningKey:    id.SigningKey.SeedString(),
		bridge.EnvServerSigningPubKey: id.SigningKey.Public().String(),
		bridge.EnvBrokerPublicKey:     fb.BoxKey.Public.String(),
		bridge.EnvBrokerSigningPubKey: fb.SigningKey.Public().String(),
		bridge.EnvAccessToken:         fb.AccessToken,
	}
	for k, v := range want {
		if got, _ := f.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if v, _ := f.Get(bridge.EnvAccessTokenExpiresAt); v == "" {
		t.Error("no expiry written")
	}
	// The file loads back, and the registered agent can pull.
	loaded, err := bridge.LoadIdentity(path, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.BoxKey.Public != id.BoxKey.Public || loaded.AccessToken != fb.AccessToken {
		t.Fatal("loaded identity differs")
	}
	col := newCollector()
	cfg := baseConfig(t, *loaded, t.TempDir())
	cfg.Deliver = col.deliver
	start(t, cfg)
	mid := fb.Enqueue(slackEvent("hi", "C1", "1.1"))
	if ev := col.next(t); ev.MessageID != mid {
		t.Fatal(ev.MessageID)
	}
}

func TestRegisterBrokerErrorsAreActionable(t *testing.T) {
	cases := []struct {
		name   string
		status int
		msg    string
		want   []string
	}{
		{"missing proof", 400, protocol.ErrMissingRegistrationProof, []string{"--registration-token"}},
		{"invalid id", 400, "invalid org_id: must match", []string{"--org-id", "invalid org_id"}},
		{"invalid token", 403, protocol.ErrInvalidRegistrationToken, []string{"invalid registration token", "re-run the Slack install", "/slack/install"}},
		{"token used", 403, protocol.ErrRegistrationTokenUsed, []string{"registration token already used — re-run the Slack install and use the new token"}},
		{"org not found", 404, protocol.ErrOrgNotFound, []string{"org not found", testOrg, "--org-id", "install the app"}},
		{"already active", 409, "agent signing key " + protocol.ErrAlreadyActive, []string{"already active", "bridge unregister"}},
		{"too large", 413, protocol.ErrBodyTooLarge, []string{"too large"}},
		{"rate limited", 429, protocol.ErrRateLimited, []string{"wait a minute"}},
		{"broker down", 503, "queue unavailable", []string{"HTTP 503", "try again"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := bridgetest.New(t, testOrg)
			fb.FailRegister(tc.status, tc.msg)
			path := filepath.Join(t.TempDir(), "bridge.env")
			_, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path})
			var ae *bridge.ActionableError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not actionable", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("advice %q lacks %q", err, w)
				}
			}
			var be *bridge.BrokerError
			if !errors.As(err, &be) || be.Status != tc.status {
				t.Errorf("cause not kept: %v", err)
			}
			if _, statErr := os.Stat(path); statErr == nil {
				t.Error("config written after a failed registration")
			}
		})
	}
}

func TestRegisterRealBrokerPaths(t *testing.T) {
	// The fake broker's own checks (not scripted failures) produce the phrases.
	fb := bridgetest.New(t, testOrg)
	dir := t.TempDir()
	reg := func(org, token string) error {
		_, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: org, RegistrationToken: token, ConfigPath: filepath.Join(dir, "b.env")})
		return err
	}
	if err := reg("T404", bridgetest.RegistrationToken); err == nil || !strings.Contains(err.Error(), "org not found") {
		t.Fatalf("unknown org: %v", err)
	}
	if err := reg(testOrg, "wrong-token-0123456789012345678901234"); err == nil || !strings.Contains(err.Error(), "invalid registration token") {
		t.Fatalf("bad token: %v", err)
	}
	if err := reg(testOrg, bridgetest.RegistrationToken); err != nil {
		t.Fatal(err)
	}
	if err := reg(testOrg, bridgetest.RegistrationToken); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("reused token: %v", err)
	}
}

func TestRegisterRefusals(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	dir := t.TempDir()
	cases := []struct {
		name string
		opts bridge.RegisterOptions
		want string
	}{
		{"plain http to a remote host", bridge.RegisterOptions{BrokerURL: "http://broker.example.com", OrgID: testOrg, RegistrationToken: "x"}, "plain http"},
		{"not a URL", bridge.RegisterOptions{BrokerURL: "broker.example.com", OrgID: testOrg, RegistrationToken: "x"}, "absolute http(s) URL"},
		{"bad org id", bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: "T|1", RegistrationToken: "x"}, "org id"},
		{"no token", bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg}, "--registration-token"},
		{"unreachable", bridge.RegisterOptions{BrokerURL: "http://127.0.0.1:1", OrgID: testOrg, RegistrationToken: "x"}, "cannot reach the broker"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.ConfigPath = filepath.Join(dir, tc.name+".env")
			_, err := bridge.Register(t.Context(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	// --insecure-http allows a non-loopback http URL (it then fails to connect).
	if _, err := bridge.ParseBrokerURLs("http://broker.example.com", true); err != nil {
		t.Fatalf("insecure-http: %v", err)
	}
	if _, err := bridge.ParseBrokerURLs("http://[::1]:8080,http://localhost:9", false); err != nil {
		t.Fatalf("loopback http: %v", err)
	}
}

func TestRegisterRefusesDifferingBrokerKeys(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	other, _ := crypto.GenerateBoxKeyPair()
	fb.AnswerRegisterWithPubkey(other.Public.String())
	path := filepath.Join(t.TempDir(), "bridge.env")
	_, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), "differ") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("config written despite differing keys")
	}
}

func TestUnregister(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	path := filepath.Join(t.TempDir(), "bridge.env")
	if err := os.WriteFile(path, []byte("KEEP=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path}); err != nil {
		t.Fatal(err)
	}
	if err := bridge.Unregister(t.Context(), path, false, false, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	f, _ := bridge.ParseEnvFile(data)
	for _, k := range []string{bridge.EnvServerPrivateKey, bridge.EnvServerSigningKey, bridge.EnvAccessToken} {
		if _, ok := f.Get(k); ok {
			t.Errorf("%s still in the file", k)
		}
	}
	for _, k := range []string{"KEEP", bridge.EnvBrokerURL, bridge.EnvOrgID} {
		if _, ok := f.Get(k); !ok {
			t.Errorf("%s removed", k)
		}
	}
	// The broker forgot the agent: a second unregister (after re-adding a
	// stale token) is refused with 401 and the keys are already gone.
	if err := bridge.Unregister(t.Context(), path, false, false, nil); !errors.Is(err, bridge.ErrNotRegistered) {
		t.Fatalf("second unregister: %v", err)
	}
}

func TestUnregisterBrokerFailureKeepsKeys(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	path := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path}); err != nil {
		t.Fatal(err)
	}
	fb.Close()
	if err := bridge.Unregister(t.Context(), path, false, false, &http.Client{}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("got %v", err)
	}
	if _, err := bridge.LoadIdentity(path, func(string) (string, bool) { return "", false }, false); err != nil {
		t.Fatalf("keys lost: %v", err)
	}
	if err := bridge.Unregister(t.Context(), path, false, true, nil); err == nil {
		t.Fatal("forced unregister should still report the broker failure")
	}
	if _, err := bridge.LoadIdentity(path, func(string) (string, bool) { return "", false }, false); !errors.Is(err, bridge.ErrNotRegistered) {
		t.Fatalf("forced unregister kept keys: %v", err)
	}
}

func TestLoadIdentityEnvWins(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	path := filepath.Join(t.TempDir(), "bridge.env")
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{bridge.EnvAccessToken: "from-env", bridge.EnvBrokerURL: "https://a.example,https://b.example"}
	id, err := bridge.LoadIdentity(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, false)
	if err != nil {
		t.Fatal(err)
	}
	if id.AccessToken != "from-env" || len(id.BrokerURLs) != 2 || id.BrokerURLs[1] != "https://b.example" {
		t.Fatalf("env did not win: %+v", id.BrokerURLs)
	}
	env[bridge.EnvServerPublicKey] = fb.BoxKey.Public.String() // not ours
	if _, err := bridge.LoadIdentity(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, false); err == nil {
		t.Fatal("mismatched public key accepted")
	}
	if _, err := bridge.LoadIdentity(filepath.Join(t.TempDir(), "none.env"), func(string) (string, bool) { return "", false }, false); !errors.Is(err, bridge.ErrNotRegistered) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestRegisterRefusesBrokenConfigBeforeSpendingToken(t *testing.T) {
	fb := bridgetest.New(t, testOrg)
	path := filepath.Join(t.TempDir(), "bridge.env")
	if err := os.WriteFile(path, []byte("GOOD=1\nBAD=\"unterminated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path})
	if err == nil || !errors.Is(err, bridge.ErrEnvSyntax) {
		t.Fatalf("got %v", err)
	}
	// The token was not spent: registering after fixing the file works.
	if err := os.WriteFile(path, []byte("GOOD=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bridge.Register(t.Context(), bridge.RegisterOptions{BrokerURL: fb.URL(), OrgID: testOrg, RegistrationToken: bridgetest.RegistrationToken, ConfigPath: path}); err != nil {
		t.Fatal(err)
	}
}

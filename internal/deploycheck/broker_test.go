package deploycheck

import (
	"strings"
	"testing"
)

func loadBrokerSettings(t *testing.T) []brokerSetting {
	t.Helper()
	s, err := readBrokerSettings(repoRoot, "cmd/broker")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) < 10 {
		t.Fatalf("found only %d broker settings; has the scanner broken?", len(s))
	}
	return s
}

func TestComposeEnvVarsKnownToBroker(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	known := brokerEnvVars(loadBrokerSettings(t))
	env := c.env("broker")
	for k := range env {
		if strings.HasPrefix(k, "SEALRELAY_") && !known[k] {
			t.Errorf("compose.yaml sets %s on the broker, which `broker serve` does not know (known: %v)", k, sortedKeys(known))
		}
	}
	for _, required := range []string{"SEALRELAY_PUBLIC_URL", "SEALRELAY_SLACK_CLIENT_ID"} {
		if env[required] == "" {
			t.Errorf("compose.yaml does not set %s on the broker", required)
		}
	}
	for _, secret := range []string{"SEALRELAY_SLACK_CLIENT_SECRET", "SEALRELAY_SLACK_SIGNING_SECRET"} {
		if env[secret+"_FILE"] == "" {
			t.Errorf("compose.yaml does not give the broker %s_FILE", secret)
		}
	}
}

// TestOperationsDocCoversBrokerConfig keeps the broker's configuration
// reference complete: every serve setting's flag and variable (and their
// -file / _FILE forms for secrets) must be named in docs/operations.md.
func TestOperationsDocCoversBrokerConfig(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/operations.md")
	for _, s := range loadBrokerSettings(t) {
		names := []string{"--" + s.Name, s.Env}
		if s.Secret {
			names = append(names, "--"+s.Name+"-file", s.Env+"_FILE")
		}
		for _, n := range names {
			if !strings.Contains(doc, n) {
				t.Errorf("docs/operations.md does not document broker setting %s", n)
			}
		}
	}
	sc, err := readSourceConfig(repoRoot, "cmd/broker")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range sortedKeys(sc.Flags) {
		if !strings.Contains(doc, "--"+f) {
			t.Errorf("docs/operations.md does not document broker flag --%s", f)
		}
	}
	for _, v := range sortedKeys(sc.EnvVars) {
		if !strings.Contains(doc, v) {
			t.Errorf("docs/operations.md does not document broker variable %s", v)
		}
	}
}

package main

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
)

// testKeysDir runs `broker init` into a fresh directory and returns it.
func testKeysDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errb bytes.Buffer
	if err := cmdInit([]string{"--dir", dir}, envMap(nil), &out, &errb); err != nil {
		t.Fatalf("init: %v\n%s", err, errb.String())
	}
	return dir
}

// envMap turns a map into a getenv function.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// baseEnv is a complete, valid environment for serve.
func baseEnv(t *testing.T) map[string]string {
	return map[string]string{
		"SEALRELAY_PUBLIC_URL":           "https://relay.example.com/",
		"SEALRELAY_SLACK_CLIENT_ID":      "1234.5678",
		"SEALRELAY_SLACK_CLIENT_SECRET":  "client-secret-value",
		"SEALRELAY_SLACK_SIGNING_SECRET": "signing-secret-value",
		"SEALRELAY_KEYS_DIR":             testKeysDir(t),
		"SEALRELAY_DATA_DIR":             filepath.Join(t.TempDir(), "data"),
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	c, err := loadConfig(nil, envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, ":8080"},
		{"public url (trailing slash trimmed)", c.PublicURL, "https://relay.example.com"},
		{"client id", c.SlackClientID, "1234.5678"},
		{"client secret", c.SlackClientSecret, "client-secret-value"},
		{"signing secret", c.SlackSigningSecret, "signing-secret-value"},
		{"api url", c.SlackAPIURL, "https://slack.com/api/"},
		{"authorize url", c.SlackAuthorizeURL, "https://slack.com/oauth/v2/authorize"},
		{"scopes = broker.DefaultBotScopes", strings.Join(c.SlackBotScopes, ","), strings.Join(broker.DefaultBotScopes, ",")},
		{"redis", c.RedisOptions == nil, true},
		{"redis prefix", c.RedisPrefix, "sealrelay:"},
		{"metrics off", c.MetricsListen, ""},
		{"log level", c.LogLevel, slog.LevelInfo},
		{"log format", c.LogFormat, "json"},
		{"token ttl", c.AccessTokenTTL, 90 * 24 * time.Hour},
		{"send rate", c.SendRate, 1.0},
		{"send burst", c.SendBurst, 20},
		{"max polls", c.MaxPollsPerAgent, 4},
		{"shutdown", c.ShutdownTimeout, 30 * time.Second},
		{"keys loaded", c.BoxKey != nil && c.SigningKey != nil && c.Keyring != nil, true},
		{"keyring version", c.Keyring.ActiveVersion(), uint32(1)},
		{"no warnings", len(c.Warnings), 0},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	keys := testKeysDir(t)
	box, err := os.ReadFile(filepath.Join(keys, boxKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	boxKP, err := crypto.ParseBoxKeyPair(strings.TrimSpace(string(box)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*config) string
	}{
		{"flag wins over env", []string{"--listen", "127.0.0.1:9999", "--send-rate", "2.5"},
			map[string]string{"SEALRELAY_LISTEN": ":1111", "SEALRELAY_SEND_RATE": "7"},
			func(c *config) string {
				if c.Listen != "127.0.0.1:9999" || c.SendRate != 2.5 {
					return "flag did not win"
				}
				return ""
			}},
		{"env wins over default", nil, map[string]string{"SEALRELAY_LOG_FORMAT": "text", "SEALRELAY_ACCESS_TOKEN_TTL": "36h"},
			func(c *config) string {
				if c.LogFormat != "text" || c.AccessTokenTTL != 36*time.Hour {
					return "env ignored"
				}
				return ""
			}},
		{"secret from env _FILE, trimmed", nil,
			map[string]string{"SEALRELAY_SLACK_SIGNING_SECRET": "", "SEALRELAY_SLACK_SIGNING_SECRET_FILE": writeFile(t, "  from-file\n")},
			func(c *config) string {
				if c.SlackSigningSecret != "from-file" {
					return "got " + c.SlackSigningSecret
				}
				return ""
			}},
		{"secret --file flag wins over env", []string{"--slack-client-secret-file", writeFile(t, "flagfile\n")}, nil,
			func(c *config) string {
				if c.SlackClientSecret != "flagfile" {
					return "got " + c.SlackClientSecret
				}
				return ""
			}},
		{"key from env _FILE overrides keys dir", nil,
			map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_BOX_KEY_FILE": filepath.Join(keys, boxKeyFile)},
			func(c *config) string {
				if c.BoxKey.Public != boxKP.Public {
					return "wrong box key"
				}
				return ""
			}},
		{"scopes, api url slash, redis, metrics, days", []string{"--slack-bot-scopes", " chat:write , commands ",
			"--slack-api-url", "http://127.0.0.1:5555/api", "--redis-url", "redis://:pw@redis.internal:6379/3",
			"--metrics-listen", "127.0.0.1:0", "--access-token-ttl", "7d", "--send-rate", "0"}, nil,
			func(c *config) string {
				switch {
				case strings.Join(c.SlackBotScopes, ",") != "chat:write,commands":
					return "scopes " + strings.Join(c.SlackBotScopes, ",")
				case c.SlackAPIURL != "http://127.0.0.1:5555/api/":
					return "api url " + c.SlackAPIURL
				case c.RedisOptions == nil || c.RedisOptions.DB != 3 || c.RedisOptions.Password != "pw":
					return "redis options"
				case c.MetricsListen != "127.0.0.1:0":
					return "metrics"
				case c.AccessTokenTTL != 7*24*time.Hour:
					return "ttl"
				case c.SendRate != 0:
					return "rate"
				}
				return ""
			}},
		{"plain http public URL warns", []string{"--public-url", "http://relay.example.com"}, nil,
			func(c *config) string {
				if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "https") {
					return "no https warning"
				}
				return ""
			}},
		{"plain http on localhost does not warn", []string{"--public-url", "http://127.0.0.1:8080"}, nil,
			func(c *config) string {
				if len(c.Warnings) != 0 {
					return "unexpected warning"
				}
				return ""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := loadConfig(tt.args, envMap(env))
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.check(c); msg != "" {
				t.Fatal(msg)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	looseKeys := testKeysDir(t)
	if err := os.Chmod(filepath.Join(looseKeys, signingKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	badKey := writeFile(t, "bm90IGEga2V5\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string // "" deletes the variable
		want []string          // one entry per expected problem, each a substring
	}{
		{"missing signing secret", nil, map[string]string{"SEALRELAY_SLACK_SIGNING_SECRET": ""},
			[]string{"SEALRELAY_SLACK_SIGNING_SECRET (or --slack-signing-secret / --slack-signing-secret-file / SEALRELAY_SLACK_SIGNING_SECRET_FILE) is required: copy it from your Slack app's Basic Information page"}},
		{"missing public url and client id", nil, map[string]string{"SEALRELAY_PUBLIC_URL": "", "SEALRELAY_SLACK_CLIENT_ID": ""},
			[]string{"SEALRELAY_PUBLIC_URL (or --public-url) is required", "SEALRELAY_SLACK_CLIENT_ID (or --slack-client-id) is required"}},
		{"bad public url", []string{"--public-url", "relay.example.com"}, nil,
			[]string{`--public-url="relay.example.com" is not an absolute http(s) URL`}},
		{"public url with query", nil, map[string]string{"SEALRELAY_PUBLIC_URL": "https://x.example/?a=b"},
			[]string{`SEALRELAY_PUBLIC_URL="https://x.example/?a=b" is not an absolute`}},
		{"bad listen", nil, map[string]string{"SEALRELAY_LISTEN": "8080"},
			[]string{`SEALRELAY_LISTEN="8080" is not a listen address: use HOST:PORT`}},
		{"bad port", []string{"--listen", ":99999"}, nil, []string{`--listen=":99999" is not a listen address`}},
		{"metrics equals listen", []string{"--listen", ":9000", "--metrics-listen", ":9000"}, nil,
			[]string{"the metrics listener needs its own address"}},
		{"pprof on a public address", []string{"--pprof-listen", "0.0.0.0:6060"}, nil,
			[]string{`--pprof-listen="0.0.0.0:6060" profiles are served on loopback only`}},
		{"value and file for one secret in env", nil,
			map[string]string{"SEALRELAY_SLACK_CLIENT_SECRET_FILE": writeFile(t, "x")},
			[]string{"SEALRELAY_SLACK_CLIENT_SECRET and SEALRELAY_SLACK_CLIENT_SECRET_FILE are both set: keep one"}},
		{"value and file for one secret in flags", []string{"--slack-client-secret", "a", "--slack-client-secret-file", "/x"}, nil,
			[]string{"--slack-client-secret and --slack-client-secret-file are both given"}},
		{"unreadable secret file", nil,
			map[string]string{"SEALRELAY_SLACK_SIGNING_SECRET": "", "SEALRELAY_SLACK_SIGNING_SECRET_FILE": filepath.Join(dir, "nope")},
			[]string{"SEALRELAY_SLACK_SIGNING_SECRET_FILE (" + filepath.Join(dir, "nope") + "): cannot read the slack-signing-secret file"}},
		{"empty secret file", nil,
			map[string]string{"SEALRELAY_SLACK_SIGNING_SECRET": "", "SEALRELAY_SLACK_SIGNING_SECRET_FILE": writeFile(t, "\n")},
			[]string{"the file is empty"}},
		{"secret with spaces, value not echoed", []string{"--slack-client-secret", "abc def"}, nil,
			[]string{"--slack-client-secret contains spaces"}},
		{"no keys at all", nil, map[string]string{"SEALRELAY_KEYS_DIR": filepath.Join(dir, "empty")},
			[]string{"no broker keys: " + filepath.Join(dir, "empty") + " holds none of"}},
		{"one key missing", nil, map[string]string{"SEALRELAY_MASTER_KEYS_FILE": filepath.Join(dir, "absent")},
			[]string{"SEALRELAY_MASTER_KEYS_FILE (" + filepath.Join(dir, "absent") + "): cannot read"}},
		{"malformed box key", nil, map[string]string{"SEALRELAY_BOX_KEY_FILE": badKey},
			[]string{"not a broker box key"}},
		{"malformed keyring in env", nil, map[string]string{"SEALRELAY_MASTER_KEYS": "1:short"},
			[]string{"SEALRELAY_MASTER_KEYS: not a master keyring"}},
		{"malformed redis url, password not echoed", []string{"--redis-url", "redis://:hunter2@h:notaport"}, nil,
			[]string{"--redis-url is not a Redis URL"}},
		{"bad redis prefix", nil, map[string]string{"SEALRELAY_REDIS_PREFIX": "a b"}, []string{"is not a usable key prefix"}},
		{"tls cert without key", []string{"--tls-cert", "/c.pem"}, nil, []string{"must be given together"}},
		{"tls files unreadable", []string{"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, nil,
			[]string{"cannot load the TLS certificate and key"}},
		{"bad log level and format", nil, map[string]string{"SEALRELAY_LOG_LEVEL": "loud", "SEALRELAY_LOG_FORMAT": "xml"},
			[]string{`SEALRELAY_LOG_LEVEL="loud" is not a log level`, `SEALRELAY_LOG_FORMAT="xml" is not a log format`}},
		{"bad numbers", []string{"--access-token-ttl", "forever", "--send-rate", "-1", "--send-burst", "0", "--max-polls-per-agent", "x", "--shutdown-timeout", "0s"}, nil,
			[]string{`--access-token-ttl="forever" is not a valid lifetime`, `--send-rate="-1" is not a rate`,
				`--send-burst="0" is not a whole number from 1`, `--max-polls-per-agent="x" is not a whole number`,
				`--shutdown-timeout="0s" is not a positive duration`}},
		{"rate not a number", []string{"--send-rate", "NaN"}, nil, []string{`--send-rate="NaN" is not a rate`}},
		{"bad scope", []string{"--slack-bot-scopes", "chat:write,Bad Scope"}, nil, []string{`"Bad Scope" is not a Slack scope`}},
		{"bad api url", []string{"--slack-api-url", "slack.com/api"}, nil, []string{`--slack-api-url="slack.com/api" is not an absolute`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := baseEnv(t)
			for k, v := range tt.env {
				if v == "" {
					delete(env, k)
				} else {
					env[k] = v
				}
			}
			_, err := loadConfig(tt.args, envMap(env))
			var ce *configError
			if !errors.As(err, &ce) {
				t.Fatalf("loadConfig error = %v, want a *configError", err)
			}
			if len(ce.Problems) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ce.Problems), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(ce.Problems[i], w) {
					t.Errorf("problem %d = %q\nwant it to contain %q", i, ce.Problems[i], w)
				}
			}
			for _, secret := range []string{"hunter2", "abc def", "client-secret-value", "signing-secret-value"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error message leaks secret %q: %v", secret, err)
				}
			}
		})
	}

	t.Run("loose key file mode warns", func(t *testing.T) {
		env := baseEnv(t)
		env["SEALRELAY_KEYS_DIR"] = looseKeys
		c, err := loadConfig(nil, envMap(env))
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "chmod 600") {
			t.Fatalf("warnings = %q", c.Warnings)
		}
	})
}

func TestLoadConfigUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want error
	}{
		{[]string{"--help"}, flag.ErrHelp},
		{[]string{"-h"}, flag.ErrHelp},
		{[]string{"--no-such-flag"}, usageError{}},
		{[]string{"extra"}, usageError{}},
	}
	for _, tt := range tests {
		_, err := loadConfig(tt.args, envMap(nil))
		switch tt.want.(type) {
		case usageError:
			if !errors.As(err, new(usageError)) {
				t.Errorf("%v: err = %v, want usage error", tt.args, err)
			}
		default:
			if !errors.Is(err, tt.want) {
				t.Errorf("%v: err = %v, want %v", tt.args, err, tt.want)
			}
		}
	}
}

func TestKnownEnvVars(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range serveTable {
		want := envPrefix + strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		if s.Env != want {
			t.Errorf("setting --%s uses %s, want %s", s.Name, s.Env, want)
		}
		if s.Usage == "" {
			t.Errorf("setting --%s has no usage text", s.Name)
		}
		if s.Required && s.Fix == "" {
			t.Errorf("required setting --%s says nothing about how to fix it", s.Name)
		}
	}
	vars := knownEnvVars()
	for _, v := range vars {
		if seen[v] {
			t.Errorf("%s listed twice", v)
		}
		seen[v] = true
	}
	for _, v := range []string{"SEALRELAY_SLACK_SIGNING_SECRET_FILE", "SEALRELAY_MASTER_KEYS_FILE", "SEALRELAY_REDIS_URL", "SEALRELAY_PUBLIC_URL"} {
		if !seen[v] {
			t.Errorf("%s missing from knownEnvVars", v)
		}
	}

	// Every flag and env var appears in serve --help.
	var help bytes.Buffer
	printServeHelp(&help)
	for _, s := range serveTable {
		for _, want := range []string{"--" + s.Name + " ", s.Env} {
			if !strings.Contains(help.String(), want) {
				t.Errorf("serve --help lacks %q", want)
			}
		}
	}
	for _, v := range vars {
		if !strings.Contains(help.String(), v) {
			t.Errorf("serve --help lacks %s", v)
		}
	}
}

func TestCheckModeSources(t *testing.T) {
	t.Parallel()
	loose := writeFile(t, "k")
	if err := os.Chmod(loose, 0o640); err != nil {
		t.Fatal(err)
	}
	tight := writeFile(t, "k")
	tests := []struct {
		src  string
		warn bool
	}{
		{loose, true},
		{tight, false},
		{"SEALRELAY_BOX_KEY_FILE (" + loose + ")", true},
		{"SEALRELAY_BOX_KEY_FILE (" + tight + ")", false},
		{"--box-key-file " + loose, true},
		{"--box-key", false},         // a value, not a file
		{"SEALRELAY_BOX_KEY", false}, // a value, not a file
	}
	for _, tt := range tests {
		var w []string
		checkMode(tt.src, &w)
		if (len(w) == 1) != tt.warn || len(w) > 1 {
			t.Errorf("checkMode(%q) warnings %q, want warn=%v", tt.src, w, tt.warn)
		}
	}
}

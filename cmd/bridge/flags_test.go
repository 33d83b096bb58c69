package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
	"github.com/sealrelay/sealrelay/internal/settings"
)

// The delivery flags are validated before the bridge starts: a short
// forward signing secret and an out-of-range concurrency are refused with
// a message naming the problem (never the secret).
func TestRunDeliveryFlagsValidated(t *testing.T) {
	t.Parallel()
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	short := filepath.Join(t.TempDir(), "short-secret")
	if err := os.WriteFile(short, []byte("tiny-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"short secret", []string{"--forward-url", "http://127.0.0.1:3000/slack/events", "--forward-signing-secret-file", short}, "at least 16"},
		{"concurrency", []string{"--delivery-concurrency", "0", "--socket-mode"}, "--delivery-concurrency must be 1-64"},
		{"forward timeout", []string{"--forward-timeout", "0s", "--socket-mode"}, "--forward-timeout must be positive"},
		{"nothing to deliver", []string{"--stream=false"}, "Socket Mode"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		args := append([]string{"run", "--config", cfgPath, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)
		code := realMain(t.Context(), args, nil, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), tc.want) || strings.Contains(errb.String(), "tiny-secret") {
			t.Fatalf("%s: exit %d: %s", tc.name, code, errb.String())
		}
	}
}

// TestBridgeVariables: every environment variable the bridge has read
// keeps feeding its setting, the new ones too, and secrets come from
// *_FILE. The command line wins over the environment.
func TestBridgeVariables(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run, reg, unreg := runSettings(), registerSettings(), unregisterSettings()
	cases := []struct {
		list    []*settings.Setting
		env     string
		value   string
		setting string
		want    string
	}{
		{run, "SEALRELAY_BRIDGE_CONFIG", "/etc/b.env", "config", "/etc/b.env"},
		{run, "SLACK_BROKER_URL", "https://b.example", "broker-url", "https://b.example"},
		{run, "SEALRELAY_BRIDGE_STATE_DIR", "/var/lib/b", "state-dir", "/var/lib/b"},
		{run, "SEALRELAY_BRIDGE_LISTEN", "127.0.0.1:7000", "listen", "127.0.0.1:7000"},
		{run, "SEALRELAY_BRIDGE_LOCAL_TOKEN_FILE", secretFile, "local-token", "from-a-file-0123456789"},
		{run, "SEALRELAY_BRIDGE_LOCAL_TOKEN", "tok", "local-token", "tok"},
		{run, "SEALRELAY_FORWARD_URL", "http://127.0.0.1:3000/e", "forward-url", "http://127.0.0.1:3000/e"},
		{run, "SEALRELAY_FORWARD_INTERACTIVITY_URL", "http://127.0.0.1:3000/i", "forward-interactivity-url", "http://127.0.0.1:3000/i"},
		{run, "SEALRELAY_FORWARD_COMMANDS_URL", "http://127.0.0.1:3000/c", "forward-commands-url", "http://127.0.0.1:3000/c"},
		{run, "SEALRELAY_FORWARD_SIGNING_SECRET", "s", "forward-signing-secret", "s"},
		{run, "SEALRELAY_FORWARD_SIGNING_SECRET_FILE", secretFile, "forward-signing-secret", "from-a-file-0123456789"},
		{run, "SEALRELAY_FORWARD_TIMEOUT", "5s", "forward-timeout", "5s"},
		{run, "SEALRELAY_SOCKET_MODE", "1", "socket-mode", "1"},
		{run, "SEALRELAY_SOCKET_MODE_APP_ID", "A1", "socket-mode-app-id", "A1"},
		{run, "SEALRELAY_LOG_LEVEL", "debug", "log-level", "debug"},
		{run, "SEALRELAY_LOG_FORMAT", "json", "log-format", "json"},
		{run, "SEALRELAY_BRIDGE_METRICS_LISTEN", "127.0.0.1:9464", "metrics-listen", "127.0.0.1:9464"},
		{run, "SEALRELAY_BRIDGE_PPROF_LISTEN", "127.0.0.1:6061", "pprof-listen", "127.0.0.1:6061"},
		{run, "SEALRELAY_BRIDGE_WEB_API_ALLOW_ORIGINS", "http://localhost:5173", "web-api-allow-origin", "http://localhost:5173"},
		{run, "SEALRELAY_BRIDGE_INSECURE_HTTP", "true", "insecure-http", "true"},
		{run, "SEALRELAY_BRIDGE_ALLOW_REMOTE", "true", "allow-remote", "true"},
		{run, "SEALRELAY_BRIDGE_STREAM", "false", "stream", "false"},
		{run, "SEALRELAY_BRIDGE_STREAM_BUFFER", "50", "stream-buffer", "50"},
		{run, "SEALRELAY_BRIDGE_DELIVERY_CONCURRENCY", "8", "delivery-concurrency", "8"},
		{run, "SEALRELAY_BRIDGE_WAIT_SECONDS", "5", "wait-seconds", "5"},
		{run, "SEALRELAY_BRIDGE_MAX_MESSAGES", "3", "max-messages", "3"},
		{reg, "SLACK_BROKER_URL", "https://b.example", "broker-url", "https://b.example"},
		{reg, "SEALRELAY_BRIDGE_CONFIG", "/etc/b.env", "config", "/etc/b.env"},
		{unreg, "SEALRELAY_BRIDGE_CONFIG", "/etc/b.env", "config", "/etc/b.env"},
	}
	for _, tc := range cases {
		l, err := settings.Load("bridge", tc.list, nil, func(k string) string {
			if k == tc.env {
				return tc.value
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Err(); err != nil {
			t.Errorf("%s=%s: %v", tc.env, tc.value, err)
			continue
		}
		if got := l.Text(tc.setting); got != tc.want {
			t.Errorf("%s=%s: --%s = %q, want %q", tc.env, tc.value, tc.setting, got, tc.want)
		}
		// The command line wins over the variable.
		if s := l.Setting(tc.setting); !s.Bool && !s.Secret {
			l2, err := settings.Load("bridge", tc.list, []string{"--" + tc.setting, "flag"}, func(k string) string { return tc.value })
			if err != nil || l2.Text(tc.setting) != "flag" {
				t.Errorf("--%s does not win over %s (%v)", tc.setting, tc.env, err)
			}
		}
	}
}

// TestRunSettingsAllProblems: bridge run reports every bad setting at
// once, from flags and variables, naming each and never a secret.
func TestRunSettingsAllProblems(t *testing.T) {
	t.Setenv("SEALRELAY_BRIDGE_WAIT_SECONDS", "99")
	t.Setenv("SEALRELAY_FORWARD_SIGNING_SECRET", "hunter2-env-secret")
	t.Setenv("SEALRELAY_FORWARD_SIGNING_SECRET_FILE", "/nonexistent")
	var out, errb bytes.Buffer
	code := realMain(t.Context(), []string{"run", "--log-level", "loud", "--delivery-concurrency", "0", "--forward-timeout", "soon", "--stream=false"}, nil, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"5 configuration problems",
		"SEALRELAY_FORWARD_SIGNING_SECRET and SEALRELAY_FORWARD_SIGNING_SECRET_FILE are both set: keep one",
		`--forward-timeout="soon" is not a duration`,
		`--log-level="loud" is not a log level`,
		`--wait-seconds must be 1-25 (SEALRELAY_BRIDGE_WAIT_SECONDS="99")`,
		"--delivery-concurrency must be 1-64",
	} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if strings.Contains(errb.String(), "hunter2") {
		t.Errorf("stderr shows the secret: %s", errb.String())
	}
}

// TestCommandHelp: -h lists every flag, file flag and variable of each
// command from its table; an unknown flag is a usage error (exit 2).
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	for cmd, list := range map[string][]*settings.Setting{"run": runSettings(), "register": registerSettings(), "unregister": unregisterSettings()} {
		var out, errb bytes.Buffer
		if code := realMain(t.Context(), []string{cmd, "-h"}, nil, &out, &errb); code != 0 {
			t.Fatalf("%s -h: exit %d", cmd, code)
		}
		for _, s := range list {
			want := []string{"--" + s.Name}
			if s.Env != "" {
				want = append(want, "env "+s.Env)
			}
			if s.Secret {
				want = append(want, "--"+s.Name+"-file FILE")
			}
			for _, w := range want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("%s -h lacks %q", cmd, w)
				}
			}
		}
		errb.Reset()
		if code := realMain(t.Context(), []string{cmd, "--no-such-flag"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "no-such-flag") {
			t.Errorf("%s --no-such-flag: exit %d, %s", cmd, code, errb.String())
		}
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
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

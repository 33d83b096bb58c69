package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// TestRotateKeysCommand: rotate-keys replaces the keys at the broker and in
// the file, keeps the old box key, and refuses a second rotation.
func TestRotateKeysCommand(t *testing.T) {
	fb := bridgetest.New(t, org)
	cfgPath := filepath.Join(t.TempDir(), "bridge.env")
	if code, _, errs := register(t, fb, cfgPath); code != 0 {
		t.Fatal(errs)
	}
	before, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stray argument", []string{"rotate-keys", "--config", cfgPath, "--state-dir", stateDir, "now"}, 2, "unexpected argument"},
		{"rotate", []string{"rotate-keys", "--config", cfgPath, "--state-dir", stateDir}, 0, "Rotated the keys"},
		{"again", []string{"rotate-keys", "--config", cfgPath, "--state-dir", stateDir}, 1, "still kept"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := realMain(t.Context(), tt.args, nil, &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
			t.Fatalf("%s: exit %d, output %q %q; want %d and %q", tt.name, code, out.String(), errb.String(), tt.code, tt.want)
		}
	}
	after, err := bridge.LoadIdentity(cfgPath, func(string) (string, bool) { return "", false }, false)
	if err != nil {
		t.Fatal(err)
	}
	box, sig := fb.AgentKeys()
	if box != after.BoxKey.Public || sig != after.SigningKey.Public() || box == before.BoxKey.Public {
		t.Fatal("broker and file do not both hold the new keys")
	}
	if after.PreviousBoxKey == nil || after.PreviousBoxKey.Public != before.BoxKey.Public {
		t.Fatal("the old box key was not kept")
	}
}

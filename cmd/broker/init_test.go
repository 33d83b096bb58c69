package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
)

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "k")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"init", "--dir", dir}, envMap(nil), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	read := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	box, err := crypto.ParseBoxKeyPair(read(boxKeyFile))
	if err != nil {
		t.Fatalf("box key: %v", err)
	}
	sig, err := crypto.ParseSigningKey(read(signingKeyFile))
	if err != nil {
		t.Fatalf("signing key: %v", err)
	}
	kr, err := crypto.ParseKeyring(read(masterKeysFile))
	if err != nil {
		t.Fatalf("keyring: %v", err)
	}
	if kr.ActiveVersion() != 1 || len(kr.Versions()) != 1 {
		t.Errorf("keyring versions %v", kr.Versions())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %v, want 0700", fi.Mode().Perm())
	}
	for _, want := range []string{box.Public.String(), sig.Public().String(), "SEALRELAY_KEYS_DIR=" + dir, "broker serve"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("init output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), box.PrivateString()) || strings.Contains(out.String(), sig.SeedString()) {
		t.Error("init printed a private key")
	}
}

func TestInitRefusesToOverwrite(t *testing.T) {
	for _, existing := range []string{boxKeyFile, signingKeyFile, masterKeysFile} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, existing)
			if err := os.WriteFile(p, []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			err := cmdInit([]string{"--dir", dir}, envMap(nil), &out, &errb)
			if err == nil || !strings.Contains(err.Error(), p+" already exists") {
				t.Fatalf("err = %v, want it to name %s", err, p)
			}
			b, _ := os.ReadFile(p)
			if string(b) != "precious\n" {
				t.Fatalf("%s was modified", existing)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("init wrote files although it refused: %v", entries)
			}
		})
	}
	t.Run("exit code", func(t *testing.T) {
		dir := testKeysDir(t)
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"init", "--dir", dir}, envMap(nil), &out, &errb); code != 1 || !strings.Contains(errb.String(), "already exists") {
			t.Fatalf("exit %d, stderr %q", code, errb.String())
		}
	})
}

func TestWriteExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := writeExclusive(p, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := writeExclusive(p, []byte("b")); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second write: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "a" {
		t.Fatalf("content %q", b)
	}
	// A symlink at the target is refused too (O_EXCL does not follow it).
	link := filepath.Join(t.TempDir(), "link")
	target := filepath.Join(t.TempDir(), "target")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeExclusive(link, []byte("x")); err == nil {
		t.Fatal("writeExclusive followed a symlink")
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("symlink target was created")
	}
}

func TestInitDefaultDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fromenv")
	var out, errb bytes.Buffer
	if err := cmdInit(nil, envMap(map[string]string{"SEALRELAY_KEYS_DIR": dir}), &out, &errb); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, masterKeysFile)); err != nil {
		t.Fatalf("SEALRELAY_KEYS_DIR not used: %v", err)
	}
	for _, args := range [][]string{{"--dir", ""}, {"stray"}, {"--bogus"}} {
		if err := cmdInit(args, envMap(nil), &out, &errb); !errors.As(err, new(usageError)) {
			t.Errorf("init %q: %v, want usage error", args, err)
		}
	}
}

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, 0, "protocol 2026-02-1"},
		{nil, 2, "Usage: broker"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"keys"}, 2, "broker keys rotate"},
		{[]string{"keys", "rotate", "--help"}, 0, "--rewrap-only"},
		{[]string{"init", "--help"}, 0, "never overwritten"},
		{[]string{"serve", "--help"}, 0, "SEALRELAY_SLACK_SIGNING_SECRET_FILE"},
		{[]string{"serve", "--listen"}, 2, "flag needs an argument"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, envMap(nil), &out, &errb)
		if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.out) {
			t.Errorf("run %q = %d, output %q; want %d containing %q", tt.args, code, out.String()+errb.String(), tt.code, tt.out)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

func loadKeyringFile(t *testing.T, path string) *crypto.Keyring {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := crypto.ParseKeyring(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// seedInstallations stores two installations with bot and refresh tokens
// encrypted under kr, and one revoked installation without secrets.
func seedInstallations(t *testing.T, st state.Store, kr *crypto.Keyring) {
	t.Helper()
	ctx := context.Background()
	for _, org := range []string{"T1", "E2"} {
		bt, err := kr.Encrypt([]byte("xoxb-"+org), org)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := kr.Encrypt([]byte("xoxe-"+org), org)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutInstallation(ctx, &state.Installation{OrgID: org, BotToken: bt, BotRefreshToken: rt}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutInstallation(ctx, &state.Installation{OrgID: "T3", Revoked: true}); err != nil {
		t.Fatal(err)
	}
}

// checkInstallations asserts that every stored secret uses master key
// version want and decrypts with a keyring holding only that version, taken
// from the keyring file at path.
func checkInstallations(t *testing.T, st state.Store, path string, want uint32) {
	t.Helper()
	ctx := context.Background()
	only, err := crypto.ParseKeyring(keyringEntry(t, path, want))
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"T1", "E2"} {
		inst, err := st.GetInstallation(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		for _, sec := range []struct{ stored, plain string }{{inst.BotToken, "xoxb-" + org}, {inst.BotRefreshToken, "xoxe-" + org}} {
			v, err := crypto.StoredVersion(sec.stored)
			if err != nil || v != want {
				t.Fatalf("%s secret version %d (%v), want %d", org, v, err, want)
			}
			pt, err := only.Decrypt(sec.stored, org)
			if err != nil || string(pt) != sec.plain {
				t.Fatalf("%s: decrypt with version %d only: %q %v", org, want, pt, err)
			}
		}
	}
}

// keyringEntry returns the "v:key" entry of version v in the keyring file.
func keyringEntry(t *testing.T, path string, v uint32) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prefix := strconv.FormatUint(uint64(v), 10) + ":"
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("version %d not in %s", v, path)
	return ""
}

func rotate(t *testing.T, args []string, env map[string]string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := cmdKeysRotate(context.Background(), args, envMap(env), &out, &errb)
	return out.String(), err
}

func TestKeysRotateBolt(t *testing.T) {
	keys := testKeysDir(t)
	data := filepath.Join(t.TempDir(), "data")
	keyringPath := filepath.Join(keys, masterKeysFile)
	origKeyring, _ := os.ReadFile(keyringPath)

	st, err := boltstore.OpenStateDir(data)
	if err != nil {
		t.Fatal(err)
	}
	seedInstallations(t, st, loadKeyringFile(t, keyringPath))

	// While the broker (here: the open state) holds the file, rotate fails
	// and leaves the keyring alone.
	_, err = rotate(t, []string{"--keys-dir", keys, "--data-dir", data}, nil)
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("rotate with a locked store: %v", err)
	}
	if now, _ := os.ReadFile(keyringPath); !bytes.Equal(now, origKeyring) {
		t.Fatal("rotate changed the keyring although the store was busy")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name     string
		args     []string
		wantOut  []string
		versions int
		active   uint32
	}{
		{"rewrap only, nothing to do", []string{"--rewrap-only"}, []string{"Re-wrapped 0 stored secrets under master key version 1"}, 1, 1},
		{"rotate", nil, []string{"Added master key version 2", "Re-wrapped 4 stored secrets under master key version 2"}, 2, 2},
		{"rewrap only again", []string{"--rewrap-only"}, []string{"Re-wrapped 0 stored secrets"}, 2, 2},
		{"rotate again", nil, []string{"Added master key version 3", "Re-wrapped 4 stored secrets under master key version 3"}, 3, 3},
		{"no rewrap", []string{"--no-rewrap"}, []string{"Added master key version 4", "--rewrap-only"}, 4, 4},
		{"rewrap after no-rewrap", []string{"--rewrap-only"}, []string{"Re-wrapped 4 stored secrets under master key version 4"}, 4, 4},
	}
	for _, s := range steps {
		out, err := rotate(t, append([]string{"--keys-dir", keys, "--data-dir", data}, s.args...), nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, w := range s.wantOut {
			if !strings.Contains(out, w) {
				t.Fatalf("%s: output %q lacks %q", s.name, out, w)
			}
		}
		kr := loadKeyringFile(t, keyringPath)
		if len(kr.Versions()) != s.versions || kr.ActiveVersion() != s.active {
			t.Fatalf("%s: keyring versions %v", s.name, kr.Versions())
		}
		fi, _ := os.Stat(keyringPath)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: keyring mode %v", s.name, fi.Mode().Perm())
		}
	}
	// The original file content (comments, version 1) is kept verbatim.
	now, _ := os.ReadFile(keyringPath)
	if !bytes.HasPrefix(now, origKeyring) {
		t.Fatal("rotate rewrote the existing keyring entries")
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(keys)
	if len(entries) != 3 {
		t.Fatalf("key dir holds %d entries, want 3", len(entries))
	}

	st, err = boltstore.OpenStateDir(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checkInstallations(t, st, keyringPath, 4)
}

func TestKeysRotateRedis(t *testing.T) {
	keys := testKeysDir(t)
	keyringPath := filepath.Join(keys, masterKeysFile)
	rdb, prefix := testredis.New(t, "cmd")
	st := redisstore.OpenState(rdb, prefix)
	seedInstallations(t, st, loadKeyringFile(t, keyringPath))

	// Settings from the environment, the Redis URL through a _FILE.
	env := map[string]string{
		"SEALRELAY_KEYS_DIR":       keys,
		"SEALRELAY_REDIS_URL_FILE": writeFile(t, testredis.URL(t)+"\n"),
		"SEALRELAY_REDIS_PREFIX":   prefix,
		"SEALRELAY_DATA_DIR":       filepath.Join(t.TempDir(), "must-not-be-created"),
	}
	out, err := rotate(t, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Re-wrapped 4 stored secrets under master key version 2") {
		t.Fatalf("output %q", out)
	}
	if _, err := os.Stat(env["SEALRELAY_DATA_DIR"]); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("rotate with Redis touched the data dir")
	}
	checkInstallations(t, st, keyringPath, 2)

	// A keyring passed with --master-keys-file works the same way.
	out, err = rotate(t, []string{"--master-keys-file", keyringPath, "--keys-dir", "/nonexistent"}, env)
	if err != nil || !strings.Contains(out, "Re-wrapped 4 stored secrets under master key version 3") {
		t.Fatalf("rotate with --master-keys-file: %q %v", out, err)
	}
}

func TestKeysRotateErrors(t *testing.T) {
	keys := testKeysDir(t)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"keyring in env", nil, map[string]string{"SEALRELAY_MASTER_KEYS": "1:AAAA"}, "SEALRELAY_MASTER_KEYS holds the keyring itself: keys rotate needs a file"},
		{"keyring as flag value", []string{"--master-keys", "1:AAAA"}, nil, "--master-keys gives the keyring as a value"},
		{"no keyring file", []string{"--keys-dir", t.TempDir()}, nil, "run `broker init` first"},
		{"both modes", []string{"--no-rewrap", "--rewrap-only"}, nil, "exclude each other"},
		{"bad redis url", []string{"--redis-url", "mysql://x"}, nil, "--redis-url is not a Redis URL"},
		{"unreachable redis", []string{"--redis-url", "redis://127.0.0.1:1/0"}, nil, "redis at 127.0.0.1:1 is unreachable"},
		{"serve-only flag", []string{"--listen", ":1"}, nil, "flag provided but not defined"},
		{"concurrent rotate", []string{"--no-rewrap"}, map[string]string{"lock": "held"}, "another `broker keys rotate` is working on the keyring"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_DATA_DIR": filepath.Join(t.TempDir(), "d")}
			for k, v := range tt.env {
				env[k] = v
			}
			if env["lock"] != "" {
				unlock, err := lockDir(keys)
				if err != nil {
					t.Fatal(err)
				}
				defer unlock()
			}
			before, _ := os.ReadFile(filepath.Join(keys, masterKeysFile))
			_, err := rotate(t, tt.args, env)
			if after, _ := os.ReadFile(filepath.Join(keys, masterKeysFile)); !bytes.Equal(before, after) {
				t.Error("a failed rotate changed the keyring file")
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

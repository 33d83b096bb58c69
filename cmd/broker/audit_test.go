package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/testredis"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// writeAuditChain writes n records (checkpoint every 4, closed) with the
// signing key of keysDir and returns the chain id.
func writeAuditChain(t *testing.T, st audit.Store, keysDir string, n int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(keysDir, signingKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := crypto.ParseSigningKey(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.DeriveKeys(sk)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLog(st, keys, audit.Options{CheckpointEvery: 4, CheckpointInterval: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Record(context.Background(), audit.Event{Kind: audit.KindCall, Org: "T1", Agent: "ag-1", Method: "chat.postMessage", Channel: "C1", BytesIn: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l.Chain()
}

// runAudit runs `broker audit args...` and returns exit code and output.
func runAudit(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"audit"}, args...), envMap(env), &out, &errb)
	return code, out.String(), errb.String()
}

// TestAuditCLIRedis: verify passes on an intact log and names the first bad
// seq of a tampered Redis list; tail prints the newest records.
func TestAuditCLIRedis(t *testing.T) {
	keys := testKeysDir(t)
	rdb, prefix := testredis.New(t, "cmdaudit")
	chain := writeAuditChain(t, redisstore.NewAuditStore(rdb, prefix), keys, 10)
	env := map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_REDIS_URL": testredis.URL(t), "SEALRELAY_REDIS_PREFIX": prefix}

	code, out, errOut := runAudit(t, env, "verify")
	if code != 0 || !strings.Contains(out, "1 chains, 10 records: intact") || !strings.Contains(out, "last checkpoint seq 10") {
		t.Fatalf("verify intact: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAudit(t, env, "tail", "-n", "3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.Contains(lines[2], "seq=10 kind=call") || !strings.Contains(lines[2], "method=chat.postMessage") {
		t.Fatalf("tail -n 3: exit %d, %q", code, out)
	}

	// Tamper: replace record 7 (index 6) with record 8's bytes.
	recKey := prefix + "{audit:" + chain + "}:rec" // docs/operations.md, "Audit log"
	ctx := context.Background()
	eighth, err := rdb.LIndex(ctx, recKey, 7).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.LSet(ctx, recKey, 6, eighth).Err(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runAudit(t, env, "verify")
	if code != 1 || !strings.Contains(errOut, "chain "+chain+": seq 7 ") || !strings.Contains(out, "BAD at seq 7") {
		t.Fatalf("verify tampered: exit %d, out %q, err %q; want exit 1 naming seq 7", code, out, errOut)
	}
	// Truncate to 5 records: the checkpoint at 8 proves seq 6.. are gone.
	if err := rdb.LTrim(ctx, recKey, 0, 4).Err(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runAudit(t, env, "verify"); code != 1 || !strings.Contains(errOut, "seq 6 truncated") {
		t.Fatalf("verify truncated: exit %d, err %q", code, errOut)
	}
}

// TestAuditCLIEmbedded: the commands read state.db when no broker runs,
// and say clearly that a running embedded broker locks it.
func TestAuditCLIEmbedded(t *testing.T) {
	keys := testKeysDir(t)
	data := filepath.Join(t.TempDir(), "data")
	bst, err := boltstore.Open(data, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ast := bst.Audit()
	writeAuditChain(t, ast, keys, 6)
	env := map[string]string{"SEALRELAY_KEYS_DIR": keys, "SEALRELAY_DATA_DIR": data}

	// The open state stands for a running broker.
	code, _, errOut := runAudit(t, env, "verify")
	if code != 1 || !strings.Contains(errOut, "in use by another process (a running `broker serve`?)") {
		t.Fatalf("verify with the store locked: exit %d, %q", code, errOut)
	}
	if err := bst.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAudit(t, env, "verify")
	if code != 0 || !strings.Contains(out, "1 chains, 6 records: intact") {
		t.Fatalf("verify embedded: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, _ = runAudit(t, env, "tail", "--json")
	if code != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, `"kind":"call"`) {
		t.Fatalf("tail --json: exit %d, %q", code, out)
	}
}

func TestAuditCLIUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{}, {"list"}, {"verify", "--follow"}, {"tail", "-n", "0"}} {
		if code, _, _ := runAudit(t, nil, args...); code != 2 {
			t.Errorf("broker audit %v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := runAudit(t, nil, "--help"); code != 0 || !strings.Contains(out, "broker audit verify") {
		t.Errorf("broker audit --help: exit %d, %q", code, out)
	}
}

func TestAuditSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		audit, required string
		wantAudit, want bool
		bad             bool
	}{
		{"", "", true, false, false},
		{"off", "", false, false, false},
		{"on", "on", true, true, false},
		{"off", "on", false, false, true},
		{"maybe", "", false, false, true},
	} {
		env := baseEnv(t)
		if tc.audit != "" {
			env["SEALRELAY_AUDIT"] = tc.audit
		}
		if tc.required != "" {
			env["SEALRELAY_AUDIT_REQUIRED"] = tc.required
		}
		c, err := loadConfig(nil, envMap(env))
		if tc.bad {
			if err == nil {
				t.Errorf("audit=%q required=%q: no error", tc.audit, tc.required)
			}
			continue
		}
		if err != nil || c.Audit != tc.wantAudit || c.AuditRequired != tc.want {
			t.Errorf("audit=%q required=%q: %+v %v", tc.audit, tc.required, c, err)
		}
	}
}

// TestServeAuditEndToEnd: `broker serve` (audit on by default) records the
// e2e flow's install, registration and send into the store it uses, writes a
// final checkpoint on shutdown, and `broker audit verify` / `tail` read it.
func TestServeAuditEndToEnd(t *testing.T) {
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			fake, fs := newE2EFake(t)
			env := e2eEnv(t, fs)
			if store == "redis" {
				_, prefix := testredis.New(t, "e2eaudit")
				env["SEALRELAY_REDIS_URL"] = testredis.URL(t)
				env["SEALRELAY_REDIS_PREFIX"] = prefix
			}
			env = dropEmpty(env)
			r := startServe(t, nil, env)
			e2eFlow(t, fake, r)
			r.stop(t)

			code, out, errOut := runAudit(t, env, "verify")
			if code != 0 || !strings.Contains(out, "1 chains, ") || !strings.Contains(out, ": intact") {
				t.Fatalf("verify after serve: exit %d, out %q, err %q", code, out, errOut)
			}
			code, out, _ = runAudit(t, env, "tail", "-n", "100")
			if code != 0 {
				t.Fatalf("tail: exit %d", code)
			}
			for _, want := range []string{"kind=install", "kind=register", "kind=send phase=intent", "kind=send phase=result"} {
				if !strings.Contains(out, want) {
					t.Errorf("tail lacks %q:\n%s", want, out)
				}
			}
			// The final checkpoint covers the whole chain.
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var last string
			for _, f := range strings.Fields(lines[len(lines)-1]) {
				if v, ok := strings.CutPrefix(f, "seq="); ok {
					last = v
				}
			}
			if _, vout, _ := runAudit(t, env, "verify"); !strings.Contains(vout, "last checkpoint seq "+last+" ") {
				t.Errorf("verify %q: want the last checkpoint at seq %s (written on shutdown)", vout, last)
			}
		})
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/internal/settings"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// auditFollowPoll is how often `broker audit tail --follow` looks for new
// records.
const auditFollowPoll = time.Second

const auditHelp = `Usage: broker audit tail [-n N] [--follow] [--json] [connection] [settings]
       broker audit verify [--json] [connection] [settings]

tail prints the N newest audit records of every chain (default 20), oldest
first; --follow keeps printing new ones until interrupted.

verify walks every chain and checks each record's MAC chain and every signed
checkpoint. It exits 0 with a summary (chains, records, last checkpoint per
chain), or 1 naming each broken chain's first bad sequence number and why
(edited, removed, reordered, truncated, bad_checkpoint).

Both read the store broker serve uses: with --admin-url, the admin listener
of a running broker (its raw audit API); else Redis with --redis-url (or
cluster / Sentinel settings); else the embedded store's state.db in
--data-dir, opened read-only; when a running embedded broker holds it
locked, they read through the admin listener (default ` + defaultAdminURL + `)
instead. Verification always runs here, never on the broker: it needs the
broker's signing key (--signing-key, or <keys-dir>/broker-signing.key), from
which the audit keys are derived.

Connection:
  --admin-url URL          admin listener: http://HOST:PORT or unix:/path/to/socket
  --admin-token-file FILE  its token (default: $SEALRELAY_ADMIN_TOKEN_FILE)

Settings:
`

// auditAdminURL is the admin listener `broker audit` falls back to when the
// embedded store is locked and no --admin-url is given (a variable so that
// a test can point it at its own listener).
var auditAdminURL = defaultAdminURL

// auditSettings are the serve settings `broker audit` reads: the store and
// the keys.
func auditSettings() []*setting {
	out := rotateSettings()
	for _, name := range []string{"box-key", "signing-key"} {
		out = append(out, settingByName(name))
	}
	return out
}

// cmdAudit implements `broker audit tail|verify`.
func cmdAudit(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	if len(args) == 0 || (args[0] != "tail" && args[0] != "verify") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, auditHelp)
			settings.Help(stdout, auditSettings())
			return flag.ErrHelp
		}
		return usageError{"want `broker audit tail` or `broker audit verify` (see broker audit --help)"}
	}
	sub := args[0]
	l := settings.New("broker audit "+sub, auditSettings())
	fs := l.FlagSet()
	n := fs.Int("n", 20, "number of records to print")
	follow := fs.Bool("follow", false, "keep printing new records")
	asJSON := fs.Bool("json", false, "print JSON lines")
	adminURL := fs.String("admin-url", auditAdminURL, "admin listener of the running broker: http://HOST:PORT or unix:/path/to/socket")
	adminToken := fs.String("admin-token-file", "", "file holding the admin token (default: $SEALRELAY_ADMIN_TOKEN_FILE)")
	r, err := parseFlags(l, args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, auditHelp)
		settings.Help(stdout, auditSettings())
		return err
	}
	if err != nil {
		return err
	}
	if sub == "verify" && (r.Given("n") || r.Given("follow")) {
		return usageError{"-n and --follow belong to `broker audit tail`"}
	}
	if *n < 1 || *n > 100000 {
		return usageError{"-n must be between 1 and 100000"}
	}
	if r.Given("admin-url") && (r.Given("redis-url") || r.Given("redis-url-file") || r.Given("redis-cluster-addrs") || r.Given("redis-sentinel-master")) {
		return usageError{"--admin-url reads through a running broker; the Redis flags open its store directly: give one of them"}
	}
	c := &config{}
	r.storage(c)
	var warnings []string
	_, sk, _ := r.keys(r.Text("keys-dir"), &warnings)
	if err := r.Err(); err != nil {
		return err
	}
	var st audit.Store
	var closeStore func()
	if r.Given("admin-url") {
		st, closeStore, err = openAdminAuditStore(*adminURL, *adminToken, getenv)
	} else {
		st, closeStore, err = openAuditStore(ctx, c)
		if errors.Is(err, boltstore.ErrInUse) {
			// A running embedded broker: read through its admin listener.
			st, closeStore, err = lockedFallback(ctx, err, *adminURL, *adminToken, getenv)
		}
	}
	if err != nil {
		return err
	}
	defer closeStore()
	if sub == "verify" {
		keys, err := audit.DeriveKeys(sk)
		if err != nil {
			return err
		}
		return auditVerify(ctx, st, keys, *asJSON, stdout)
	}
	return auditTail(ctx, st, *n, *follow, *asJSON, stdout)
}

// openAuditStore opens the audit store broker serve writes: in Redis, or in
// the embedded state.db (read-only; a running embedded broker locks it).
func openAuditStore(ctx context.Context, c *config) (audit.Store, func(), error) {
	if c.usesRedis() {
		rdb, _, err := newRedisClient(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		return redisstore.NewAuditStore(rdb, c.RedisPrefix), func() { _ = rdb.Close() }, nil
	}
	return boltstore.OpenAuditReadOnly(c.DataDir)
}

// openAdminAuditStore reads the audit log through the admin listener at
// rawURL (token from tokenFile, else $SEALRELAY_ADMIN_TOKEN_FILE).
func openAdminAuditStore(rawURL, tokenFile string, getenv func(string) string) (audit.Store, func(), error) {
	h, err := dialAdmin(rawURL, tokenFile, getenv)
	if err != nil {
		return nil, nil, err
	}
	return httpAuditStore{h}, func() { _ = h.Close() }, nil
}

// lockedFallback opens the admin listener when the embedded store is
// locked, or explains both ways out when there is no admin token to use.
func lockedFallback(ctx context.Context, locked error, rawURL, tokenFile string, getenv func(string) string) (audit.Store, func(), error) {
	if tokenFile == "" && getenv("SEALRELAY_ADMIN_TOKEN_FILE") == "" {
		return nil, nil, fmt.Errorf("%w: pass --admin-token-file (and --admin-url if the listener is not at %s) to read its audit log through the admin listener, or stop the broker", locked, defaultAdminURL)
	}
	st, closeStore, err := openAdminAuditStore(rawURL, tokenFile, getenv)
	if err == nil {
		if _, err = st.Chains(ctx); err != nil {
			closeStore()
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w, and reading it through the admin listener failed: %w", locked, err)
	}
	return st, closeStore, nil
}

// auditBrokenError reports a failed verification (exit code 1).
type auditBrokenError struct{ problems []*audit.Problem }

func (e auditBrokenError) Error() string {
	lines := make([]string, len(e.problems))
	for i, p := range e.problems {
		lines[i] = p.String()
	}
	return fmt.Sprintf("audit log broken in %d chain(s):\n  %s", len(e.problems), strings.Join(lines, "\n  "))
}

func auditVerify(ctx context.Context, st audit.Store, keys *audit.Keys, asJSON bool, stdout io.Writer) error {
	rep, err := audit.Verify(ctx, st, keys)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.Marshal(rep)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		for _, c := range rep.Chains {
			cp := "no checkpoint"
			if c.LastCheckpoint != nil {
				cp = fmt.Sprintf("last checkpoint seq %d at %s", c.LastCheckpoint.Seq, c.LastCheckpoint.Time.Format(time.RFC3339))
			}
			state := "ok"
			if c.Problem != nil {
				state = fmt.Sprintf("BAD at seq %d (%s: %s)", c.Problem.Seq, c.Problem.Reason, c.Problem.Detail)
			}
			fmt.Fprintf(stdout, "chain %s: %d records, %s: %s\n", c.Chain, c.Records, cp, state)
		}
		fmt.Fprintf(stdout, "%d chains, %d records", len(rep.Chains), rep.Records())
		if rep.OK() {
			fmt.Fprint(stdout, ": intact\n")
		} else {
			fmt.Fprintf(stdout, ": %d broken\n", len(rep.Problems()))
		}
	}
	if !rep.OK() {
		return auditBrokenError{rep.Problems()}
	}
	return nil
}

func auditTail(ctx context.Context, st audit.Store, n int, follow, asJSON bool, stdout io.Writer) error {
	recs, err := audit.Tail(ctx, st, n)
	if err != nil {
		return err
	}
	for _, r := range recs {
		printAuditRecord(stdout, r, asJSON)
	}
	if !follow {
		return nil
	}
	// Positions already printed (or skipped) per chain.
	seen := map[string]int64{}
	ids, err := st.Chains(ctx)
	if err != nil {
		return fmt.Errorf("audit tail: %w", err)
	}
	for _, id := range ids {
		if seen[id], err = st.Len(ctx, id); err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
	}
	t := time.NewTicker(auditFollowPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ids, err := st.Chains(ctx)
		if err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
		sort.Strings(ids)
		var fresh []*audit.Record
		for _, id := range ids {
			rs, next, err := audit.Since(ctx, st, id, seen[id])
			if err != nil {
				return fmt.Errorf("audit tail: %w", err)
			}
			seen[id] = next
			fresh = append(fresh, rs...)
		}
		audit.SortRecords(fresh)
		for _, r := range fresh {
			printAuditRecord(stdout, r, asJSON)
		}
	}
}

// printAuditRecord prints one record: a JSON line, or key=value text.
func printAuditRecord(w io.Writer, r *audit.Record, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	parts := []string{r.Time.Format(time.RFC3339Nano), "chain=" + r.Chain, fmt.Sprintf("seq=%d", r.Seq), "kind=" + string(r.Kind)}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("phase", string(r.Phase))
	if r.Ref != 0 {
		add("ref", fmt.Sprint(r.Ref))
	}
	add("org", r.Org)
	add("agent", r.Agent)
	add("method", r.Method)
	add("channel", r.Channel)
	add("outcome", r.Outcome)
	add("error", r.ErrorCode)
	if r.BytesIn != 0 || r.BytesOut != 0 {
		add("bytes", fmt.Sprintf("%d/%d", r.BytesIn, r.BytesOut))
	}
	fmt.Fprintln(w, strings.Join(parts, " "))
}

// startAudit builds the audit log broker serve records into (nil when
// --audit is off). Its chain is new for this process.
func startAudit(cfg *config, st audit.Store, logger *slog.Logger) (audit.Recorder, error) {
	if !cfg.Audit {
		return nil, nil
	}
	if st == nil {
		return nil, errors.New("audit: the store has no audit engine")
	}
	keys, err := audit.DeriveKeys(cfg.SigningKey)
	if err != nil {
		return nil, err
	}
	l, err := audit.NewLog(st, keys, audit.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	logger.Info("audit log on", "chain", l.Chain(), "required", cfg.AuditRequired)
	return l, nil
}

// stopAudit writes the final checkpoint of rec's chain.
func stopAudit(rec audit.Recorder, timeout time.Duration, logger *slog.Logger) {
	l, ok := rec.(*audit.Log)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		logger.Warn("final audit checkpoint failed", "chain", l.Chain(), "err", err)
	}
}

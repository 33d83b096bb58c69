package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/atomicfile"
	"github.com/sealrelay/sealrelay/internal/settings"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

const rotateHelpIntro = `Usage: broker keys rotate [flags]

Adds a new master key version to the keyring file (written atomically, mode
0600; older versions are kept) and re-wraps every stored Slack token's data key
under it, then reports how many secrets were re-wrapped. The secrets themselves
are never decrypted.

The keyring must be a file: --master-keys-file, SEALRELAY_MASTER_KEYS_FILE, or
<keys-dir>/master.keys. The store is the one broker serve uses: Redis with
--redis-url, else the embedded store in --data-dir (stop the broker first; the
embedded store allows one process).

With Redis and running replicas, rotate in two steps so that no replica meets a
secret wrapped under a version it does not know:
  broker keys rotate --no-rewrap     # add the version
  (restart every replica so it loads the new keyring)
  broker keys rotate --rewrap-only   # re-wrap under the newest version

Settings:
`

// rotateSettings are the serve settings `keys rotate` reads.
func rotateSettings() []*setting {
	var out []*setting
	for _, s := range allSettings() {
		if s.HasTag(tagRotate) {
			out = append(out, s)
		}
	}
	return out
}

// cmdKeysRotate implements `broker keys rotate`.
func cmdKeysRotate(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	l := settings.New("broker keys rotate", rotateSettings())
	fs := l.FlagSet()
	noRewrap := fs.Bool("no-rewrap", false, "only add the new master key version")
	rewrapOnly := fs.Bool("rewrap-only", false, "only re-wrap stored secrets under the newest version already in the keyring")
	r, err := parseFlags(l, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, rotateHelpIntro)
		settings.Help(stdout, rotateSettings())
		fmt.Fprint(stdout, "  --no-rewrap\n        only add the new master key version\n  --rewrap-only\n        only re-wrap stored secrets under the newest version in the keyring\n")
		return err
	}
	if err != nil {
		return err
	}
	if *noRewrap && *rewrapOnly {
		return usageError{"--no-rewrap and --rewrap-only exclude each other"}
	}

	// The keyring must be a file we can rewrite.
	mk := settingByName("master-keys")
	path := ""
	switch {
	case r.Given(mk.Name):
		r.Problem("--%s gives the keyring as a value: keys rotate needs a file to append to: use --%s-file", mk.Name, mk.Name)
	case r.Given(mk.Name + "-file"):
		path = fs.Lookup(mk.Name + "-file").Value.String()
	case getenv(mk.Env) != "":
		r.Problem("%s holds the keyring itself: keys rotate needs a file to append to: store it in a file and set %s_FILE (or --%s-file)", mk.Env, mk.Env, mk.Name)
	case getenv(mk.Env+"_FILE") != "":
		path = getenv(mk.Env + "_FILE")
	default:
		if kd := r.Text("keys-dir"); kd == "" {
			r.Problem("%s is empty: name the directory written by `broker init`", r.Setting("keys-dir").Names())
		} else {
			path = filepath.Join(kd, masterKeysFile)
		}
	}
	c := &config{}
	if !*noRewrap {
		r.storage(c)
	}
	if err := r.Err(); err != nil {
		return err
	}

	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer unlock()
	// Open the store before touching the keyring, so that an unreachable or
	// busy store changes nothing.
	var st state.Store
	if !*noRewrap {
		var closeState func()
		st, closeState, err = openStateForRotate(ctx, c)
		if err != nil {
			return err
		}
		defer closeState()
	}
	kr, version, err := addMasterKey(path, *rewrapOnly)
	if err != nil {
		return err
	}
	if !*rewrapOnly {
		fmt.Fprintf(stdout, "Added master key version %d to %s.\n", version, path)
	}
	if *noRewrap {
		fmt.Fprintf(stdout, "Restart every broker so it loads version %d, then run `broker keys rotate --rewrap-only`.\n", version)
		return nil
	}
	n, err := state.RewrapSecrets(ctx, st, kr.Rewrap)
	if err != nil {
		return fmt.Errorf("re-wrap stored secrets (%d done): %w; master key version %d is in %s: after fixing this, run `broker keys rotate --rewrap-only`", n, err, version, path)
	}
	fmt.Fprintf(stdout, "Re-wrapped %d stored secrets under master key version %d.\n", n, version)
	if !*rewrapOnly {
		fmt.Fprintf(stdout, "Restart the broker(s) so they load version %d. Keep the older versions in %s: a backup of the store may still need them.\n", version, path)
	}
	return nil
}

// addMasterKey reads the keyring file at path and, unless rewrapOnly,
// appends a new version atomically (temp file + fsync + rename, mode 0600).
// It returns the resulting keyring and its active version.
func addMasterKey(path string, rewrapOnly bool) (*crypto.Keyring, uint32, error) {
	text, err := readSecretFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read master keyring %s: %w (run `broker init` first, or point --keys-dir / --master-keys-file at it)", path, err)
	}
	kr, err := crypto.ParseKeyring(text)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if rewrapOnly {
		return kr, kr.ActiveVersion(), nil
	}
	next := kr.ActiveVersion() + 1
	if next == 0 {
		return nil, 0, fmt.Errorf("%s: master key versions exhausted", path)
	}
	entry, err := crypto.GenerateMasterKeyEntry(next)
	if err != nil {
		return nil, 0, err
	}
	// Keep the file as it was (comments included) and append the entry.
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read master keyring %s: %w", path, err)
	}
	defer crypto.Wipe(orig)
	out := make([]byte, 0, len(orig)+len(entry)+2)
	out = append(out, orig...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, entry...)
	out = append(out, '\n')
	defer crypto.Wipe(out)
	nkr, err := crypto.ParseKeyring(string(out))
	if err != nil || nkr.ActiveVersion() != next {
		return nil, 0, fmt.Errorf("%s: new keyring does not parse back (%v); nothing written", path, err)
	}
	if err := writeFileAtomic(path, out); err != nil {
		return nil, 0, err
	}
	return nkr, next, nil
}

// writeFileAtomic replaces path with b through atomicfile.Write (mode
// 0600, or the replaced file's tighter mode).
func writeFileAtomic(path string, b []byte) error {
	err := atomicfile.Write(path, b, 0o600)
	if errors.Is(err, atomicfile.ErrCreateTemp) {
		return fmt.Errorf("%w (is the directory read-only, e.g. a mounted secret?)", err)
	}
	return err
}

// openStateForRotate opens the State broker serve would use.
func openStateForRotate(ctx context.Context, c *config) (state.Store, func(), error) {
	if c.usesRedis() {
		rdb, _, err := newRedisClient(ctx, c)
		if err != nil {
			return nil, nil, err
		}
		st := redisstore.OpenState(rdb, c.RedisPrefix)
		return st, func() { _ = st.Close(); _ = rdb.Close() }, nil
	}
	st, err := boltstore.OpenStateDir(c.DataDir)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

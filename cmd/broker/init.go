package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/atomicfile"
)

const initHelp = `Usage: broker init [--dir DIR]

Generates the broker's key material into DIR (default $SEALRELAY_KEYS_DIR, or
./keys), each file created with mode 0600 and never overwritten:

  broker-box.key       X25519 private key (agents encrypt sends to its public key)
  broker-signing.key   Ed25519 signing seed (signs inbox messages; also keys the
                       stored token hashes: replacing it invalidates every agent
                       registration)
  master.keys          master keyring, version 1 (encrypts Slack tokens at rest;
                       losing it makes stored installations unreadable)

If any of the three files exists, nothing is written.
`

// masterKeysHeader starts a keyring file written by init.
const masterKeysHeader = `# sealrelay master keyring: one VERSION:BASE64 entry per line.
# The highest version encrypts new secrets; keep older versions until
# ` + "`broker keys rotate`" + ` has re-wrapped every stored secret.
`

type keyFile struct {
	name, contents, what string
}

// cmdInit implements `broker init`.
func cmdInit(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("broker init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := getenv("SEALRELAY_KEYS_DIR")
	if def == "" {
		def = defaultKeysDir
	}
	dir := fs.String("dir", def, "directory for the key files")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, initHelp)
			return err
		}
		return usageError{fmt.Sprintf("%v (see broker init --help)", err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (see broker init --help)", fs.Arg(0))}
	}
	if *dir == "" {
		return usageError{"--dir is empty: name the directory for the key files"}
	}

	// Refuse before generating or writing anything.
	for _, name := range []string{boxKeyFile, signingKeyFile, masterKeysFile} {
		p := filepath.Join(*dir, name)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: refusing to overwrite broker keys (move it away, or use another --dir)", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}

	box, err := crypto.GenerateBoxKeyPair()
	if err != nil {
		return err
	}
	sig, err := crypto.GenerateSigningKey()
	if err != nil {
		return err
	}
	entry, err := crypto.GenerateMasterKeyEntry(1)
	if err != nil {
		return err
	}
	files := []keyFile{
		{boxKeyFile, box.PrivateString() + "\n", "X25519 private key"},
		{signingKeyFile, sig.SeedString() + "\n", "Ed25519 signing seed"},
		{masterKeysFile, masterKeysHeader + entry + "\n", "master keyring (version 1)"},
	}

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	var created []string
	for _, f := range files {
		p := filepath.Join(*dir, f.name)
		if err := writeExclusive(p, []byte(f.contents)); err != nil {
			for _, c := range created {
				_ = os.Remove(c)
			}
			return err
		}
		created = append(created, p)
	}
	if err := atomicfile.SyncDir(*dir); err != nil {
		return err
	}
	if fi, err := os.Stat(*dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stderr, "warning: %s has mode %v; consider chmod 700 %s\n", *dir, fi.Mode().Perm(), *dir)
	}

	fmt.Fprintf(stdout, "Created broker keys in %s (mode 0600):\n", *dir)
	for _, f := range files {
		fmt.Fprintf(stdout, "  %-22s %s\n", f.name, f.what)
	}
	fmt.Fprintf(stdout, `
Broker public keys (bridges fetch them from GET /api/broker-pubkey):
  broker_pubkey          %s
  broker_signing_pubkey  %s

Back these files up. Losing master.keys makes the stored Slack tokens
unreadable (reinstall the app); replacing broker-signing.key invalidates every
agent registration.

Next, start the broker:
  SEALRELAY_KEYS_DIR=%s \
  SEALRELAY_PUBLIC_URL=https://relay.example.com \
  SEALRELAY_SLACK_CLIENT_ID=<Client ID> \
  SEALRELAY_SLACK_CLIENT_SECRET_FILE=/path/to/client-secret \
  SEALRELAY_SLACK_SIGNING_SECRET_FILE=/path/to/signing-secret \
  broker serve
(add SEALRELAY_REDIS_URL=redis://... to run several replicas; or give each key
with SEALRELAY_BOX_KEY_FILE, SEALRELAY_SIGNING_KEY_FILE and
SEALRELAY_MASTER_KEYS_FILE; see broker serve --help)
`, box.Public, sig.Public(), *dir)
	return nil
}

// writeExclusive creates path with O_EXCL and mode 0600, writes b and
// fsyncs it.
func writeExclusive(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite broker keys", path)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

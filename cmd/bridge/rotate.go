package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
)

// cmdRotateKeys runs `bridge rotate-keys`: new X25519 and Ed25519 keys,
// registered at the broker with agent.rekey (docs/protocol.md §8.4).
func cmdRotateKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bridge rotate-keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", envOr("SEALRELAY_BRIDGE_CONFIG", bridge.DefaultConfigPath()), "configuration file written by register; env SEALRELAY_BRIDGE_CONFIG")
	stateDir := fs.String("state-dir", envOr("SEALRELAY_BRIDGE_STATE_DIR", bridge.DefaultStateDir()), "state directory of `bridge run` (its lock shows whether the bridge runs); env SEALRELAY_BRIDGE_STATE_DIR")
	insecure := fs.Bool("insecure-http", false, "allow a plain http:// broker URL that is not loopback")
	force := fs.Bool("force", false, "rotate even while the key of an earlier rotation is still kept (messages still sealed to it become unreadable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	id, err := bridge.RotateKeys(ctx, bridge.RotateOptions{ConfigPath: *config, StateDir: *stateDir, InsecureHTTP: *insecure, Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Rotated the keys of this agent at %s.\n", id.BrokerURLs[0])
	fmt.Fprintf(stdout, "New box key %s, signing key %s; written to %s.\n", id.BoxKey.Public, id.SigningKey.Public(), *config)
	fmt.Fprintf(stdout, "The old box key is kept as %s for messages sealed before now; `bridge run` drops it once none has needed it for %v.\n",
		bridge.EnvPreviousServerPrivateKey, bridge.PreviousKeyQuiet)
	fmt.Fprintf(stdout, "Start the bridge again (bridge run). Rotated at %s.\n", id.PreviousBoxKeyRetiredAt.Format(time.RFC3339))
	return nil
}

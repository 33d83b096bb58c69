package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/internal/settings"
)

// rotateKeysSettings are the settings of `bridge rotate-keys`.
func rotateKeysSettings() []*settings.Setting {
	return settings.Pointers([]settings.Setting{
		configSetting("configuration file written by register"),
		{Name: "state-dir", Env: "SEALRELAY_BRIDGE_STATE_DIR", Default: bridge.DefaultStateDir(), Arg: "DIR",
			Usage: "state directory of `bridge run` (its lock shows whether the bridge runs)"},
		insecureSetting(),
		{Name: "force", Bool: true, Default: "false", Check: settings.Bool,
			Usage: "rotate even while the key of an earlier rotation is still kept (messages still sealed to it become unreadable)"},
	})
}

// cmdRotateKeys runs `bridge rotate-keys`: new X25519 and Ed25519 keys,
// registered at the broker with agent.rekey (docs/protocol.md §8.4).
func cmdRotateKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	l, err := loadSettings("rotate-keys", rotateKeysSettings(), args, stderr)
	if err != nil {
		return err
	}
	if err := l.Err(); err != nil {
		return err
	}
	config, stateDir := l.Text("config"), l.Text("state-dir")
	insecure, force := l.Bool("insecure-http"), l.Bool("force")
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	id, err := bridge.RotateKeys(ctx, bridge.RotateOptions{ConfigPath: config, StateDir: stateDir, InsecureHTTP: insecure, Force: force})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Rotated the keys of this agent at %s.\n", id.BrokerURLs[0])
	fmt.Fprintf(stdout, "New box key %s, signing key %s; written to %s.\n", id.BoxKey.Public, id.SigningKey.Public(), config)
	fmt.Fprintf(stdout, "The old box key is kept as %s for messages sealed before now; `bridge run` drops it once none has needed it for %v.\n",
		bridge.EnvPreviousServerPrivateKey, bridge.PreviousKeyQuiet)
	fmt.Fprintf(stdout, "Start the bridge again (bridge run). Rotated at %s.\n", id.PreviousBoxKeyRetiredAt.Format(time.RFC3339))
	return nil
}

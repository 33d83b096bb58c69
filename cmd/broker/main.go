// Command broker runs the public half of sealrelay: it holds the Slack
// credentials, receives Slack's webhooks, seals them to the registered agents
// and serves the agent API.
//
// Usage:
//
//	broker init [--dir DIR]        generate the broker keys and master keyring
//	broker serve [flags]           run the server (broker serve --help)
//	broker keys rotate [flags]     add a master key version, re-wrap stored secrets
//	broker audit tail|verify       print or verify the audit log
//	broker agents list|revoke      list or revoke agents (admin listener or --redis-url)
//	broker dlq list|redrive|purge  an agent's dead letters
//	broker version                 print the build and protocol versions
//
// Every serve setting is a flag and a SEALRELAY_* environment variable (a
// flag given on the command line wins over the environment); every secret
// can also be read from a file named by --NAME-file or SEALRELAY_NAME_FILE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sealrelay/sealrelay/protocol"
)

// version is the build version, set with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

const usageText = `Usage: broker <command> [flags]

Commands:
  init [--dir DIR]      generate the broker's box key, signing key and master
                        keyring (files created with mode 0600; never overwritten)
  serve [flags]         run the broker (see: broker serve --help)
  keys rotate [flags]   add a master key version and re-wrap every stored secret
                        (see: broker keys rotate --help)
  audit tail|verify     print the newest audit records, or verify the audit log
                        (see: broker audit --help)
  agents list|revoke    list agents (last pull, inbox, idle) or revoke one
                        (see: broker agents --help)
  dlq list|redrive|purge  an agent's dead letters (see: broker dlq --help)
  version               print the broker version and the protocol version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal starts the graceful shutdown, restore the
		// default handling so that a second one stops the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code: 0 on success,
// 2 for usage and configuration errors, 1 for runtime failures.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = cmdInit(args[1:], getenv, stdout, stderr)
	case "serve":
		err = cmdServe(ctx, args[1:], getenv, stdout, stderr)
	case "keys":
		if len(args) < 2 || args[1] != "rotate" {
			fmt.Fprint(stderr, "Usage: broker keys rotate [flags]   (see: broker keys rotate --help)\n")
			return 2
		}
		err = cmdKeysRotate(ctx, args[2:], getenv, stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, args[1:], getenv, stdout, stderr)
	case "agents":
		err = cmdAgents(ctx, args[1:], getenv, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args[1:], getenv, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "sealrelay broker %s (protocol %s)\n", version, protocol.Version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		fmt.Fprintf(stderr, "broker: unknown command %q\n\n%s", args[0], usageText)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)), errors.As(err, new(*configError)):
		fmt.Fprintf(stderr, "broker %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "broker %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a command-line mistake (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

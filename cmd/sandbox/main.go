// Command sandbox runs sealrelay end to end on one machine, with nothing but
// Go installed: no Slack account and no Redis.
//
//	go run ./cmd/sandbox [--listen 127.0.0.1:7890] [--every 5s] [--verbose]
//
// It starts, in one process:
//
//   - a simulated Slack workspace: the fake Slack Web API and OAuth consent
//     used by the tests (internal/slackfake), plus a generator that posts
//     correctly signed app_mention and message.im events to the broker every
//     few seconds (and one for every line typed on stdin);
//   - a broker on the embedded bbolt store in a temporary data directory;
//   - a bridge registered through the real path: GET /slack/install → Slack
//     consent → /slack/oauth/callback page → registration token scraped from
//     the page → bridge register → bridge run, with the local API on
//     127.0.0.1:7890.
//
// The terminal shows each event's way (received by the broker → sealed and
// queued → pulled → verified and opened → delivered on /events) with its
// latency, and every call the simulated Slack receives. Ctrl-C stops
// everything and removes the temporary directory.
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
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain parses the flags, runs the sandbox until ctx ends and returns the
// exit code (0 ok, 1 failure, 2 usage).
func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 2
	}
	if err := run(ctx, opts, stdin, stdout, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "sandbox: %v\n", err)
		return 1
	}
	return 0
}

// options configure one sandbox run.
type options struct {
	// Listen is the bridge's local API address.
	Listen string
	// BrokerListen and SlackListen are the broker's and the fake Slack's
	// addresses (random loopback ports by default).
	BrokerListen string
	SlackListen  string
	// Every is the generator's interval; zero turns the generator off (lines
	// typed on stdin still become events).
	Every time.Duration
	// Verbose sends the broker's and bridge's info logs to stderr.
	Verbose bool
	// KeepData keeps the temporary directory (keys, stores, bridge config).
	KeepData bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:7890", "bridge local API address (loopback)")
	fs.StringVar(&o.BrokerListen, "broker-listen", "127.0.0.1:0", "broker address (port 0 = any free port)")
	fs.StringVar(&o.SlackListen, "slack-listen", "127.0.0.1:0", "simulated Slack address (port 0 = any free port)")
	fs.DurationVar(&o.Every, "every", 5*time.Second, "how often the simulated workspace posts an event (0 = only lines typed on stdin)")
	fs.BoolVar(&o.Verbose, "verbose", false, "show the broker's and the bridge's logs")
	fs.BoolVar(&o.KeepData, "keep-data", false, "keep the temporary data directory on exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./cmd/sandbox [flags]\n\n"+
			"Runs a broker (embedded store), a simulated Slack workspace and a registered\n"+
			"bridge in one process. Type a line and press Enter to send it as a Slack DM.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if o.Every < 0 {
		return o, fmt.Errorf("--every must not be negative")
	}
	return o, nil
}
